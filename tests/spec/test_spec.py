import pytest

from budgetft.search_space import parse_param, parse_space, point
from budgetft.spec import JobError, load_job, resolve_job_path, validate_job


def test_shipped_jobs_load():
    smol = load_job("jobs/boolq-smollm2.yaml")
    assert smol.model.name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert smol.prompt.labels == {"true": " yes", "false": " no"}  # YAML bool keys become text
    assert smol.prompt.fields == ["passage", "question"]
    opt = load_job("boolq-opt125m")
    assert opt.model.name == "facebook/opt-125m"
    assert opt.prompt.template.startswith("Using information in the passage, answer the following question: {question}? ### Passage: {passage} ### Answer:")


def test_default_job_is_the_embedded_default():
    assert resolve_job_path(None).name == "boolq-smollm2.yaml"


def test_set_overrides_are_typed_and_nested():
    job = load_job(None, ["train.max_steps=7", "eval.limit=null", "methods.lora.r=[2,4]", "seed=3"])
    assert job.train.max_steps == 7 and job.eval.limit is None and job.seed == 3
    assert job.methods["lora"]["r"] == [2, 4]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.max_stepz=3", "train.max_stepz: unknown key (valid keys: loss, batch_size, micro_batch_size, max_steps"),
        ("train.batch_size=0", "train.batch_size: Input should be greater than or equal to 1"),
        ("methods.loraa={}", "unknown method 'loraa'; valid methods: lora, prompt_tuning"),
        ("methods.lora.rank=3", "lora: unknown parameter(s) rank; valid: init, learning_rate, lora_alpha, lora_dropout, r,"),
        ("prompt.labels={a: x}", "prompt.labels: needs two or more classes"),
        ("prompt.template=no fields", "template uses no data field"),
        ("methods.lora.learning_rate={loguniform: [0, 1]}", "loguniform needs a positive low bound"),
        ("bogus=1", "bogus: unknown key"),
    ],
)
def test_bad_values_name_the_field(override, expected):
    with pytest.raises(JobError) as err:
        load_job(None, [override])
    assert expected in str(err.value)


def test_missing_job_lists_shipped_jobs():
    with pytest.raises(JobError, match="boolq-opt125m, boolq-smollm2"):
        load_job("no-such-job")


def test_override_needs_key_value():
    with pytest.raises(JobError, match="write it as key=value"):
        load_job(None, ["train.max_steps"])


def test_search_space_forms():
    space = parse_space({"r": [4, 8], "lr": {"loguniform": [1e-4, 1e-2]}, "alpha": 16, "k": {"randint": [1, 3]}})
    assert space["r"].kind == "choice" and space["alpha"].kind == "fixed"
    cfg = point(space, {"r": 8, "lr": 5.0, "alpha": 1, "k": None, "other": "x"})
    assert cfg["r"] == 8  # the default is allowed by the choice
    assert cfg["lr"] == pytest.approx(1e-3)  # default outside the range: geometric midpoint
    assert cfg["alpha"] == 16 and cfg["k"] == 2 and cfg["other"] == "x"
    with pytest.raises(ValueError, match="r: an empty list"):
        parse_param("r", [])


def test_job_without_methods_is_refused(tiny_job_data):
    tiny_job_data["methods"] = {}
    with pytest.raises(JobError, match="list one or more methods"):
        validate_job(tiny_job_data)


def test_a_model_with_its_own_template_gets_none_of_the_jobs_patterns():
    """prompt.patterns are other wordings of the job's template (PET's): a model option that asks
    its question in a template of its own has no patterns; one that uses the job's keeps them."""
    from budgetft.spec import load_job

    job = load_job("boolq-smollm2", ['models=[{"name": "other/decoder"}, {"name": "other/encoder", "template": "{question} {passage}"}]'])
    decoder, same_template, own_template = job.variants()
    assert decoder.prompt.patterns and same_template.prompt.patterns == decoder.prompt.patterns
    assert own_template.prompt.template == "{question} {passage}" and own_template.prompt.patterns == []
    shipped = load_job("boolq-smollm2").variants()
    assert shipped[1].prompt.template != shipped[0].prompt.template and shipped[1].prompt.patterns == []


def test_a_learning_rate_written_5e_5_is_a_number(tmp_path):
    """YAML 1.1 wants a dot in a float: `--set ...learning_rate=5e-5` was stored as the string
    '5e-5' (issue 27); in a job file too."""
    job = load_job(None, ["methods.lora.learning_rate=5e-5", "methods.prompt_tuning.learning_rate=[1e-3, 3E-2]"])
    assert job.methods["lora"]["learning_rate"] == 5e-5 and isinstance(job.methods["lora"]["learning_rate"], float)
    assert job.methods["prompt_tuning"]["learning_rate"] == [1e-3, 3e-2]
    assert load_job(None, ["name=1e5x"]).name == "1e5x"  # not a number: still text
