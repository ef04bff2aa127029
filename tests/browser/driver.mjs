// Drives Debian's chromium (through playwright-core, never a downloaded browser) for the
// end-to-end tests of the web phone. The Rust test harness starts it and sends one JSON
// command per line on stdin; each gets one JSON line back on stdout: {"id":..,"ok":true,
// "value":..} or {"id":..,"ok":false,"error":".."}.
//
// usage: node driver.mjs FAKE_MICROPHONE.wav
//
// Chromium runs headless with fake media devices: its microphone plays the WAV file, so the far
// end can check it hears the page's tone.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const wav = process.argv[2];
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sylkrtc-chromium-'));
const flags = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  // Gather 127.0.0.1 host candidates, never mDNS names.
  '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];
if (wav) flags.push(`--use-file-for-fake-audio-capture=${wav}`);

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: flags,
  ignoreDefaultArgs: ['--headless'],
  viewport: { width: 480, height: 760 },
});
const page = context.pages()[0] || await context.newPage();
const log = [];
page.on('console', (message) => log.push(`[${message.type()}] ${message.text()}`));
page.on('pageerror', (error) => log.push(`[pageerror] ${error.message}`));

/** The dominant frequency of the remote audio, from a WebAudio analyser. */
async function tone(seconds) {
  return page.evaluate(async (seconds) => {
    const audio = document.getElementById('remote-audio');
    if (!audio || !audio.srcObject) return { frequency: 0, level: -Infinity, error: 'no remote audio' };
    const context = new AudioContext();
    await context.resume();
    const source = context.createMediaStreamSource(audio.srcObject);
    const analyser = context.createAnalyser();
    analyser.fftSize = 16384;
    analyser.smoothingTimeConstant = 0.5;
    source.connect(analyser);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    let best = 1;
    // Below 100 Hz is hum and DC, not a tone.
    const first = Math.ceil((100 * analyser.fftSize) / context.sampleRate);
    for (let i = first; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    const result = { frequency: (best * context.sampleRate) / analyser.fftSize, level: bins[best] };
    await context.close();
    return result;
  }, seconds);
}

const commands = {
  open: ({ url }) => page.goto(url).then(() => null),
  fill: ({ selector, value }) => page.fill(selector, value).then(() => null),
  click: ({ selector }) => page.click(selector).then(() => null),
  text: ({ selector }) => page.textContent(selector),
  visible: ({ selector }) => page.isVisible(selector),
  waitVisible: ({ selector, timeout = 15000 }) =>
    page.waitForSelector(selector, { state: 'visible', timeout }).then(() => null),
  waitText: ({ selector, pattern, timeout = 15000 }) =>
    page.waitForFunction(
      ([selector, pattern]) => new RegExp(pattern).test(document.querySelector(selector)?.textContent || ''),
      [selector, pattern],
      { timeout },
    ).then(() => page.textContent(selector)),
  evaluate: ({ expression }) => page.evaluate(expression),
  script: ({ path }) => page.addScriptTag({ path }).then(() => null),
  tone: ({ seconds = 2 }) => tone(seconds),
  screenshot: ({ file }) => page.screenshot({ path: file, fullPage: true }).then(() => null),
  log: () => log.join('\n'),
};

const input = readline.createInterface({ input: process.stdin });
for await (const line of input) {
  if (!line.trim()) continue;
  let request;
  try { request = JSON.parse(line); } catch { continue; }
  if (request.do === 'quit') break;
  const handler = commands[request.do];
  try {
    if (!handler) throw new Error(`unknown command ${request.do}`);
    const value = await handler(request);
    process.stdout.write(`${JSON.stringify({ id: request.id, ok: true, value: value ?? null })}\n`);
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ id: request.id, ok: false, error: String(error.message || error) })}\n`);
  }
}
await context.close();
fs.rmSync(profile, { recursive: true, force: true });
