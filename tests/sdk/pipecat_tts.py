"""Synthesizes speech with Pipecat's OpenAI TTS service (pipecat-ai) in a pipeline of its own,
as an app runs it (no transport: the audio frames are collected), its base URL pointed at the
relay and everything else its defaults (gpt-4o-mini-tts, voice alloy, pcm at 24 kHz). Writes
the PCM of its audio frames (s16le, mono) to OUT_FILE and prints their sample rates; an error
frame fails the run.

usage: pipecat_tts.py BASE_URL API_KEY TEXT_FILE OUT_FILE
"""

import asyncio
import sys

from pipecat.frames.frames import EndFrame, ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.tts import OpenAITTSService


class Collect(FrameProcessor):
    """Keeps the audio that reaches the end of the pipeline, and every error on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.pcm = bytearray()
        self.rates: set[int] = set()
        self.errors: list[str] = []

    async def process_frame(self, frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.rates.add(frame.sample_rate)
            self.pcm += frame.audio
        elif isinstance(frame, ErrorFrame):
            self.errors.append(frame.error)
        await self.push_frame(frame, direction)


async def main() -> None:
    base_url, key, text_file, out_file = sys.argv[1:5]
    with open(text_file, encoding="utf-8") as f:
        text = f.read()
    tts = OpenAITTSService(api_key=key, base_url=base_url + "/v1")
    collect = Collect()
    task = PipelineTask(
        Pipeline([tts, collect]), params=PipelineParams(audio_out_sample_rate=24000)
    )

    @task.event_handler("on_pipeline_error")
    async def on_error(_task, frame: ErrorFrame) -> None:
        collect.errors.append(frame.error)

    await task.queue_frames([TTSSpeakFrame(text), EndFrame()])
    await PipelineRunner(handle_sigint=False).run(task)
    if collect.errors:
        sys.exit(f"Pipecat's OpenAI TTS failed: {collect.errors}")
    with open(out_file, "wb") as f:
        f.write(collect.pcm)
    print(",".join(str(rate) for rate in sorted(collect.rates)))


asyncio.run(main())
