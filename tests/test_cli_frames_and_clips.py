"""The whole-frames and clip-mode codec options reach the codecs from the command line
through the existing ``--codec-option`` / ``--route`` entry points, and a chunk that breaks
whole frames is refused at start-up."""

from __future__ import annotations

import pytest

from callengine.cli import build_parser, server_config_from_args
from callengine.protocols.base import Role
from callengine.protocols.registry import create_codec


def config_of(*argv: str):
    return server_config_from_args(build_parser().parse_args(["serve", "echo", *argv]))


def test_whole_frames_and_clips_options_reach_the_codecs():
    config = config_of(
        "--codec-option", "awaaz.whole_frames=off", "--codec-option", "knowlarity.clips=utterance",
        "--route", "/k-clips=knowlarity,clips=utterance,clip_ms=3000",
    )  # fmt: skip
    awaaz = create_codec("awaaz", Role.ENGINE, **config.options_for("awaaz", None))
    assert awaaz.capabilities.frame_ms == 0
    knowlarity = create_codec("knowlarity", Role.ENGINE, **config.options_for("knowlarity", None))
    assert knowlarity.capabilities.one_clip_in_flight and knowlarity.capabilities.chunk_ms == 5000
    routed = create_codec("knowlarity", Role.ENGINE, **config.options_for("knowlarity", config.routes[0]))
    assert routed.capabilities.one_clip_in_flight and routed.capabilities.chunk_ms == 3000
    assert create_codec("awaaz", Role.ENGINE, **config_of().options_for("awaaz", None)).capabilities.frame_ms == 20


def test_a_chunk_that_is_not_whole_frames_is_refused_at_start_up():
    with pytest.raises(ValueError, match=r"chunk_ms \(30\) on awaaz is not a whole number of the provider's 20 ms frames"):
        config_of("--provider", "awaaz", "--chunk-ms", "30")
    # chunk_ms names a call setting, so --codec-option awaaz.chunk_ms is that provider's pacing
    with pytest.raises(ValueError, match=r"chunk_ms \(30\) on awaaz is not a whole number of the provider's 20 ms frames"):
        config_of("--codec-option", "awaaz.chunk_ms=30")
    assert config_of("--provider", "awaaz", "--chunk-ms", "40").call.chunk_ms == 40
    with pytest.raises(ValueError, match="knowlarity codec options .*clips is 'stream' or 'utterance'"):
        config_of("--codec-option", "knowlarity.clips=file")
