"""QLoRA: LoRA's adapters over a base whose linear layers are stored in 4-bit NormalFloat with
double quantization (Dettmers et al., 2023), computing in bf16 (fp16 on a GPU without bf16).

The adapters and what they train are LoRA's (budgetft.methods.lora); only the base differs: a
trial of this method loads its model through bitsandbytes (budgetft.models.placement), about
0.52 bytes a weight instead of 2, which is what lets an 8B model train on a 16-24 GB GPU. The
memory plan offers it when a bf16 LoRA does not fit (budgetft.planner.memory_plan). Needs
bitsandbytes (`pip install 'budgetft[gpu]'`); its CPU backend runs it too, slowly (tests).
"""

from budgetft.methods.base import DECODER
from budgetft.methods.lora import variant

METHOD = variant(
    "qlora",
    "LoRA adapters over a 4-bit NF4 base (bitsandbytes): the same adapters in a quarter of the weights' memory",
    fixed={},
    space={
        "r": [8, 16],
        "lora_alpha": 16,
        "learning_rate": {"loguniform": [1e-4, 2e-3]},
    },
    quantization="nf4",
    aliases=("q_lora",),
    architectures=(DECODER,),
    notes="a 4-bit base is offered for decoders (bitsandbytes quantizes their linear layers; an encoder's are small)",
)
