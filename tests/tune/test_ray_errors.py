"""Ray's errors in words a user understands."""


def test_ray_errors_in_words():
    from budgetft.tune.tracking import ray_error_in_words

    assert "lack of memory" in ray_error_in_words("ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.")
    assert "worker process died" in ray_error_in_words("ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.")
    assert ray_error_in_words("") == "the trial's process failed (no error was recorded)"
