"""BitFit: train only the bias terms (Ben Zaken et al., 2022). Ours: peft has no BitFit.

Llama-style models have no biases at all, so BitFit there would train nothing. We then add
zero-initialised biases to every linear layer of the transformer (not the output head):
the model's function is unchanged at step 0 and the trainable set is exactly what BitFit
trains on a model that has biases. An encoder's freshly initialised classification head is
trained whole, as in the paper's GLUE experiments.
"""

from budgetft.methods.arch import freeze_all, make_head_trainable
from budgetft.methods.base import Method

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def apply(model, config, context):
    import torch

    head = model.get_output_embeddings()
    freeze_all(model)
    for module in model.modules():
        if module is head:
            continue
        if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)):
            if module.bias is None:
                weight = module.weight
                out_features = weight.shape[0]
                module.bias = torch.nn.Parameter(torch.zeros(out_features, dtype=weight.dtype, device=weight.device))
            module.bias.requires_grad_(True)
    make_head_trainable(model)
    return model


METHOD = Method(
    name="bitfit",
    summary="bias terms only (zero biases added where the model has none)",
    defaults={"learning_rate": 1e-3},
    default_space={"learning_rate": {"loguniform": [3e-4, 1e-2]}},
    apply=apply,
    uses_peft=False,
)
