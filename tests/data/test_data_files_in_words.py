"""A data file that cannot be read is named with where and why."""

import json

import pytest

from tests.conftest import make_rows


def test_a_malformed_jsonl_line_is_named_by_its_line(tiny_job_data, tmp_path):
    from budgetft.data import DataError
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    lines = [json.dumps(r) for r in make_rows(60)]
    lines[50] = lines[50][:-1]  # line 51 loses its closing brace
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    tiny_job_data["data"]["files"]["train"] = str(bad)
    with pytest.raises(DataError) as err:
        prepare_task(validate_job(tiny_job_data))
    assert "line 51," in str(err.value) and "line 1 " not in str(err.value)


def test_a_directory_given_as_a_data_file(tiny_job_data, tmp_path):
    from budgetft.data import DataError
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    folder = tmp_path / "data_dir"
    folder.mkdir()
    tiny_job_data["data"]["files"]["train"] = str(folder)
    with pytest.raises(DataError) as err:
        prepare_task(validate_job(tiny_job_data))
    assert "is a directory" in str(err.value) and "not found" not in str(err.value)
