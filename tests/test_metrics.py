import pytest

from budgetft.metrics import classification_metrics, wilson_interval


def test_wilson_interval_known_values():
    # 62 of 100: p=0.62, z=1.96 -> (0.5221, 0.7091) by the Wilson formula
    low, high = wilson_interval(62, 100)
    assert low == pytest.approx(0.52209, abs=1e-4) and high == pytest.approx(0.70907, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_metrics_hand_computed():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 0, 0]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 6)
    # recalls: a 2/3, b 1/2, c 0/1
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # F1: a p=2/4 r=2/3 -> 4/7; b p=1/2 r=1/2 -> 1/2; c 0
    assert m["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)
    assert m["prediction_share"] == {"a": pytest.approx(4 / 6), "b": pytest.approx(2 / 6), "c": 0.0}
    assert m["correct"] == [True, True, False, True, False, False]


def test_majority_guess_has_half_balanced_accuracy():
    m = classification_metrics([1, 1, 1, 0], [1, 1, 1, 1], ["no", "yes"])
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == 0.5
