// Runs on the audio thread: mono float samples at the context rate → 16 kHz PCM16, ~100 ms per
// message, with the chunk's RMS level for the page's meter. "flush" sends the part-filled chunk.
class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000; // sampleRate: the AudioContext's, a global in worklet scope
    this.position = 0; // fractional read position into the incoming samples
    this.held = new Float32Array(0);
    this.out = new Int16Array(1600);
    this.filled = 0;
    this.port.onmessage = (ev) => {
      if (ev.data === "flush") {
        this.post(this.filled);
        this.port.postMessage({ flushed: true });
      }
    };
  }

  post(count) {
    if (!count) return;
    let sum = 0;
    for (let k = 0; k < count; k++) sum += (this.out[k] / 32768) ** 2;
    this.port.postMessage({ pcm: this.out.buffer.slice(0, count * 2), rms: Math.sqrt(sum / count) });
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const samples = new Float32Array(this.held.length + channel.length);
    samples.set(this.held);
    samples.set(channel, this.held.length);
    let i = this.position;
    while (i + this.ratio <= samples.length) {
      // average the samples this output sample stands for: a boxcar low-pass before decimating
      const from = Math.floor(i), to = Math.min(samples.length, Math.floor(i + this.ratio));
      let sum = 0;
      for (let k = from; k < Math.max(to, from + 1); k++) sum += samples[k];
      const value = sum / Math.max(1, to - from);
      this.out[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(value * 32767)));
      if (this.filled === this.out.length) this.post(this.filled);
      i += this.ratio;
    }
    const keep = Math.floor(i);
    this.held = samples.slice(keep);
    this.position = i - keep;
    return true;
  }
}
registerProcessor("pcm16-downsampler", Pcm16Downsampler);
