"""`vmcjet eval`'s default length: 10^6 walker samples, at least 1000 steps."""

from vmcjet.evaluate import EVAL_SAMPLES, MIN_EVAL_STEPS, default_eval_steps


def test_default_eval_steps_hold_the_sample_count():
    assert default_eval_steps(256) == 3907  # ceil(10^6 / 256)
    for batch in (1, 7, 128, 256, 999):
        steps = default_eval_steps(batch)
        assert steps * batch >= EVAL_SAMPLES and (steps - 1) * batch < EVAL_SAMPLES
    assert default_eval_steps(4096) == MIN_EVAL_STEPS
