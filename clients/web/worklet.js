// Runs on the audio thread: mono float samples at the context rate → 16 kHz PCM16, ~100 ms per message.
class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000; // sampleRate: the AudioContext's, a global in worklet scope
    this.position = 0; // fractional read position into the incoming samples
    this.held = new Float32Array(0);
    this.out = new Int16Array(1600);
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
      if (this.filled === this.out.length) {
        this.port.postMessage(this.out.buffer.slice(0));
        this.filled = 0;
      }
      i += this.ratio;
    }
    const keep = Math.floor(i);
    this.held = samples.slice(keep);
    this.position = i - keep;
    return true;
  }
}
registerProcessor("pcm16-downsampler", Pcm16Downsampler);
