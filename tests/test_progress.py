"""Progress bars: redrawn in place on a terminal, whole lines at a steady cadence in a log."""

from __future__ import annotations

import io

from practice_torch.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_a_line_every_tenth_and_one_at_the_end_without_carriage_returns():
    log = io.StringIO()
    for _ in progress(range(95), desc="work", unit="step", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("work:   0% 0/95") and lines[-1].startswith("work: 100% 95/95")
    assert [line.split()[2] for line in lines[1:-1]] == [f"{n}/95" for n in range(9, 95, 9)]


def test_a_message_between_a_logs_lines_is_a_line_of_its_own_without_carriage_returns():
    """The training loop's note when the thread team changes size (``bar.write``), and tqdm's own ``write`` from
    elsewhere: whole lines, no clearing. Control: on a terminal the bar is cleared (a carriage return) and redrawn."""
    from tqdm import tqdm

    for stream in (io.StringIO(), Terminal()):
        bar = progress(total=20, desc="train", every=10, file=stream)
        bar.update(10)
        bar.write("vae: threads 2 -> 1: other processes kept 1.0 of 2 cores busy", file=stream)
        tqdm.write("a note from elsewhere", file=stream)
        bar.update(10)
        bar.close()
        text = stream.getvalue()
        if isinstance(stream, Terminal):
            assert "\r" in text
            continue
        assert "\r" not in text
        assert text.splitlines()[1:] == ["train:  50% 10/20 [" + text.splitlines()[1].split("[", 1)[1],
                                         "vae: threads 2 -> 1: other processes kept 1.0 of 2 cores busy",
                                         "a note from elsewhere",
                                         "train: 100% 20/20 [" + text.splitlines()[4].split("[", 1)[1]]


def test_a_bar_updated_by_hand_prints_every_n_steps_with_its_postfix():
    log = io.StringIO()
    bar = progress(total=30, desc="train", every=10, file=log)
    for step in range(1, 31):
        if step % 10 == 0:
            bar.set_postfix(loss=f"{step / 10:.1f}", refresh=False)
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 4 and [line.split()[2] for line in lines] == ["0/30", "10/30", "20/30", "30/30"]
    assert lines[1].endswith("loss=1.0]") and lines[3].endswith("loss=3.0]")


def test_without_a_total_the_log_gets_a_first_and_a_last_line():
    log = io.StringIO()
    for _ in progress(iter(range(5)), desc="open", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2
    assert lines[0].startswith("open: 0 [") and lines[1].startswith("open: 5 [")


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    """The negative control of the log format: a terminal gets tqdm's carriage-return redraws."""
    screen = Terminal()
    for _ in progress(range(5), desc="tty", file=screen):
        pass
    assert screen.getvalue().count("\r") >= 2 and "|" in screen.getvalue()
