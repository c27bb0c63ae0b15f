"""A real, tiny event clip for the tests: the device's own recorder (simulated camera →
libx264 → ring) cut around a trigger, so every test of the path holds real H.264/MP4."""

from gridlink.firmware.device import clips, video

T0 = 1_800_000_000.0


def tiny_clip(folder, width=160, height=120, fps=10, seconds=2.5, trigger_at=1.2):
    """The bytes of a clip of about ``seconds`` (1 s before the trigger at ``trigger_at``
    s, 1 s after it), a keyframe a second."""
    ring = clips.PacketRing(10, 10_000_000)
    done = []
    maker = clips.EventClips(ring, folder, pre_s=1, post_s=1, on_clip=done.append)
    recorder = video.Recorder(video.SimulatedVideo(width, height),
                              video.H264Encoder(width, height, fps, 400_000, 1.0), ring, fps,
                              maker)
    for i in range(int(seconds * fps)):
        if i == int(trigger_at * fps):
            maker.trigger(T0 + trigger_at, name="c")
        recorder.step(T0 + i / fps)
    (clip,) = done
    return clip.path.read_bytes()
