// One stream's Opus on its way out (opus_out.rs owns it): the stream's PCM frames are posted to
// the encoder Worker as they are written, and the Opus frames of its answer (records: a u32
// length, then the frame; protocol/src/encoder_link.rs) go to the socket in order, until the
// pipe is closed. Only I/O: the encoder makes the frames, the session decides what goes. An
// encoder that fails while the pipe is open closes the socket (1011, "internal error") as a
// dropped link would, and logs `failure` (a line opus_out.rs formatted).
export class OpusPipe {
  constructor(encoder, ws, failure) {
    const { readable, writable } = new TransformStream();
    this.writer = writable.getWriter();
    this.open = true;
    const answer = encoder.fetch("https://encoder.internal/packets", { method: "POST", body: readable });
    this.relay(answer, ws).catch(() => {
      if (!this.open) return;
      console.log(failure);
      ws.close(1011, "encoder failed");
    });
  }

  async relay(answer, ws) {
    const response = await answer;
    if (response.status !== 200) throw new Error("encoder");
    const reader = response.body.getReader();
    let held = new Uint8Array(0);
    for (;;) {
      const { done, value } = await reader.read();
      if (!this.open) return reader.cancel();
      if (done) return;
      const bytes = new Uint8Array(held.length + value.length);
      bytes.set(held);
      bytes.set(value, held.length);
      const view = new DataView(bytes.buffer);
      let at = 0;
      while (at + 4 <= bytes.length && at + 4 + view.getUint32(at, true) <= bytes.length) {
        const end = at + 4 + view.getUint32(at, true);
        ws.send(bytes.subarray(at + 4, end));
        at = end;
      }
      held = bytes.slice(at);
    }
  }

  write(frame) {
    if (this.open) this.writer.write(frame).catch(() => {});
  }

  close() {
    if (!this.open) return;
    this.open = false;
    this.writer.close().catch(() => {});
  }
}
