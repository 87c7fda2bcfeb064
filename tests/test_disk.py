"""A full disk (issue 27): every write a run makes (a record, a ledger line, a trial's weights)
raises DiskFull, naming the directory and the fix, and leaves what was written before whole."""

import errno
import json
from decimal import Decimal

import pytest

from budgetft.disk import DiskFull, as_disk_full, is_disk_full
from budgetft.files import atomic_dir, read_json, write_json
from budgetft.money.ledger import Ledger, read_charges


def test_a_record_on_a_full_disk_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "run" / "trial.json"
    write_json(path, {"steps": 10})
    monkeypatch.setenv("BUDGETFT_DISK_FULL", str(tmp_path / "run"))
    with pytest.raises(DiskFull) as full:
        write_json(path, {"steps": 20})
    assert full.value.errno == errno.ENOSPC and "the disk is full (writing trial.json)" in str(full.value)
    assert read_json(path) == {"steps": 10} and [p.name for p in path.parent.iterdir()] == ["trial.json"]


def test_a_ledger_line_on_a_full_disk_is_not_recorded(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path, "1.00")
    ledger.charge("0.10", "training", "paid")
    monkeypatch.setenv("BUDGETFT_DISK_FULL", str(tmp_path))
    with pytest.raises(DiskFull):
        ledger.charge("0.10", "training", "refused by the disk")
    monkeypatch.delenv("BUDGETFT_DISK_FULL")
    assert ledger.spent == Decimal("0.10") and [c.description for c in read_charges(ledger.path)] == ["paid"]
    ledger.charge("0.05", "training", "after space was freed")
    assert read_charges(ledger.path)[-1].total == Decimal("0.15")


def test_kept_weights_survive_a_save_that_meets_a_full_disk(tmp_path):
    weights = tmp_path / "adapter"

    def save(text):
        def write(folder):
            folder.mkdir(parents=True)
            (folder / "w.bin").write_text(text)
        return write

    atomic_dir(weights, save("best at step 10"))

    def half_then_full(folder):
        folder.mkdir(parents=True)
        (folder / "w.bin").write_text("half")
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })")

    with pytest.raises(DiskFull, match="the trial's weights"):
        atomic_dir(weights, half_then_full, "the trial's weights")  # safetensors' own error type, as ENOSPC
    assert (weights / "w.bin").read_text() == "best at step 10"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    atomic_dir(weights, save("best at step 20"))
    assert (weights / "w.bin").read_text() == "best at step 20"


def test_what_counts_as_a_full_disk():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    other = PermissionError(errno.EACCES, "Permission denied")
    assert as_disk_full(other, "/x") is other
    full = DiskFull("/run", "the ledger", needed=3 * 1024 * 1024, free=1024)
    assert str(full) == "the disk is full (writing the ledger): 1 KiB free under /run; about 3.0 MiB needed"
    import pickle

    assert str(pickle.loads(pickle.dumps(full))) == str(full)  # a Ray worker's error reaches the driver whole
    json.dumps(str(full))
