"""workers/event_stack.py: a Sentry event's own stack as a report, bounded like a dump's."""

from __future__ import annotations

from server.dashboard.stack import crashing_rows
from symbolicator.limits import Limits
from triage.components import TRUSTED
from triage.signature.generator import generate
from workers.event_stack import event_report


def _event(frames: int, images: int) -> dict:
    """A native event: frames oldest first (Sentry's order), each in one of images 4 KiB apart."""
    return {
        "exception": {"values": [{"type": "SIGSEGV", "stacktrace": {"frames": [
            {"instruction_addr": hex(0x10000 + (i % images) * 0x1000 + 0x10)} for i in range(frames)]}}]},
        "debug_meta": {"images": [
            {"image_addr": hex(0x10000 + i * 0x1000), "image_size": 0x1000, "code_file": f"/lib/lib{i}.so"}
            for i in range(images)]},
    }


def test_frames_land_in_their_image() -> None:
    report = event_report(_event(frames=3, images=3))
    frames = report["crashing_thread"]["frames"]
    assert [f["module"] for f in frames] == ["lib2.so", "lib1.so", "lib0.so"]  # crashing frame first
    assert [f["module_offset"] for f in frames] == ["0x10"] * 3
    assert "cut" not in report


def test_an_event_listing_many_frames_and_images_is_cut_with_a_count() -> None:
    limits = Limits(modules=100, frames_per_thread=50)
    report = event_report(_event(frames=5000, images=3000), limits=limits)
    thread = report["crashing_thread"]
    assert thread["frame_count"] == 50 and len(thread["frames"]) == 50
    assert report["cut"] == {"frames": {"listed": 5000, "read": 50}, "modules": {"listed": 3000, "read": 100}}
    # the crashing frame (the last listed) is kept: frame 4999 sits in image 4999 % 3000 = 1999,
    # past the 100 images read, so it has no module
    assert thread["frames"][0]["offset"] == hex(0x10000 + 1999 * 0x1000 + 0x10)
    assert thread["frames"][0]["module"] is None
    assert all(f["module"] in (None,) or int(f["module"][3:-3]) < 100 for f in thread["frames"])


def test_event_frames_say_they_come_from_the_sdk_and_still_count_as_trusted() -> None:
    """Issue 17, friction 9: no minidump trust word (context, cfi) on frames nobody walked; they
    are as reliable for signatures and components as walked ones."""
    report = event_report({"exception": {"values": [{"type": "ValueError", "stacktrace": {"frames": [
        {"function": "main", "module": "game"}, {"function": "nar_generate_line", "module": "nar"}]}}]}})
    frames = report["crashing_thread"]["frames"]
    assert [f["trust"] for f in frames] == ["event", "event"] and "event" in TRUSTED
    assert generate(report).signature == "nar_generate_line"  # as when these frames were labelled cfi
    assert [(r["trust"], r["label"], r["guessed"]) for r in crashing_rows(report)] == [("event", "event", False)] * 2
