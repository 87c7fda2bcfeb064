"""`budgetft plan --dry-run [--cloud gcp]`: the memory plan of every option and, for a cloud
plan, the instance chosen, from the models' configurations alone (nothing spent, no hub)."""

from __future__ import annotations

import json
from decimal import Decimal

# Imported inside functions: budgetft's domain code: `budgetft --help` loads none of it (start-up
# time).


def memory_plan(spec, cap: Decimal, err, *, as_json: bool = False, cloud: str | None = None, gpu: str | None = None,
                region: str | None = None, spot: bool = False) -> int:
    """Print the memory plan (and the instance); 0, or 2 when nothing fits (said why)."""
    from budgetft.cli.common import stdout_console
    from budgetft.money.gpu_names import GPU_LABELS, resolve_gpu
    from budgetft.planner.memory_plan import catalogue_gpus, job_memory

    gpus = catalogue_gpus()
    wanted = resolve_gpu(gpu) if gpu else None
    with err.status("sizing every option from its model's configuration…"):
        options = job_memory(spec)
    document: dict = {"job": spec.name, "budget_usd": str(cap), "memory": [o.to_dict() for o in options]}
    out = stdout_console()
    lines = []
    for o in options:
        lines.append(f"[bold]{o.key}[/] on {o.model}: {o.trainable / 1e6:,.1f}M of {o.params / 1e9:,.2f}B weights train; batch {o.batch} x "
                     f"{o.length} tokens; the whole batch in 16 bits without checkpointing needs {o.unquantized_peak_bytes / 1e9:.1f} GB")
        for g in gpus:
            if wanted and g != wanted:
                continue
            f = o.fits[g]
            mark = "fits" if f.fits else "[red]no[/]"
            lines.append(f"    {GPU_LABELS.get(g, g):<12} {mark:<4} {f.words()}")
        if not o.fitting():
            lines.append(f"    [red]fits no catalogue GPU[/]: use a shorter prompt.max_length or a smaller train.batch_size")
        elif wanted and not o.fits[wanted].fits:
            lines.append(f"    refused on {GPU_LABELS.get(wanted, wanted)}; the smallest GPU that would hold it: {GPU_LABELS.get(o.smallest_gpu, o.smallest_gpu)}")
    code = 0
    if cloud:
        from budgetft.cloud.choose import ChoiceError, choose
        from budgetft.cloud.estimate import disk_gb_for
        from budgetft.models.speed import parameter_count
        from budgetft.money.catalog_store import default_catalog

        params, _ = parameter_count(spec.model.name, spec.model.revision)
        try:
            choice = choose(default_catalog(), model_name=spec.model.name, tokens_per_example=spec.prompt.max_length,
                            full_finetune="full" in spec.methods, budget=cap, gpu=gpu, region=region, spot=spot,
                            disk_gb=disk_gb_for(params), memory=options)
            document["instance"] = {"machine": choice.instance.machine, "gpu": choice.instance.gpu, "gpu_count": choice.instance.gpu_count,
                                    "region": choice.instance.region, "spot": choice.instance.spot,
                                    "usd_per_hour": str(choice.instance.usd_per_hour), "why": choice.reason(),
                                    "ranked": [{"instance": c.instance.label, "usd_per_hour": str(c.instance.usd_per_hour),
                                                "examples_for_budget": round(c.examples_for_budget), "how": c.how} for c in choice.ranked[:5]]}
            lines.append(f"[bold]instance[/]: {choice.reason()}")
        except ChoiceError as exc:
            document["refused"] = str(exc)
            lines.append(f"[bold red]refused[/]: {exc}")
            code = 2
    if as_json:
        print(json.dumps(document, indent=2, default=str))
    else:
        for line in lines:
            out.print(line, highlight=False)
    err.print("nothing spent: the memory plan comes from the models' configurations (no weights, no hub); "
              "calibration on the GPU measures the true peak and corrects it")
    return code
