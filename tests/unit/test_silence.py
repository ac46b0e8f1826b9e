"""A server that gave no answer is not asked again for a while (adapters.retries.Silence)."""

from __future__ import annotations

from meshctl.adapters.retries import Silence


def test_silence_holds_for_its_time_then_lets_the_server_be_asked_again():
    now = [100.0]
    silence = Silence("istiod", 5.0, lambda: now[0])
    assert silence.reason() == ""
    silence.heard_nothing("timed out")
    assert silence.reason() == ("istiod did not answer (timed out); not asked again for 5 s "
                                "after that")
    now[0] += 4.9
    assert silence.reason()
    now[0] += 0.1
    assert silence.reason() == ""
