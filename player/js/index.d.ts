// Types of orpheus-player (hand-written; see README.md).

/** What a UI binds to. */
export type PlayerState =
  | "idle"
  | "connecting"
  | "buffering"
  | "speaking"
  | "blocked-by-autoplay"
  | "suspended"
  | "error"
  | "closed";

/** Why a message ended. */
export type EndReason = "done" | "stopped" | "superseded" | "replaced" | "error" | "interrupted";

/** The relay's error, for reason `error`. */
export interface SpeakError {
  /** A code from docs/protocol.md, e.g. `rate_limited`, `text_too_long`. */
  code: string;
  /** The fixed text for the code. */
  message: string;
  /** Seconds to wait before trying again, when the relay says. */
  retryAfterSeconds?: number;
}

/** How a message finished. Every `speak` settles exactly once. */
export interface SpeakResult {
  id: string;
  reason: EndReason;
  /** Samples the relay sent. */
  samples: number;
  /** Samples played: what the listener heard. */
  played: number;
  /** Times playback ran dry. */
  underruns: number;
  /** From `speak` to the first sample played, or null when nothing played. */
  firstAudioSeconds: number | null;
  /** The `AudioContext` time its first sample played at, or null when nothing played: a
   * word's `startSeconds` after it is when the word played. */
  startedAt: number | null;
  /** From `speak` to completion. */
  totalSeconds: number;
  error?: SpeakError;
  /** With a relay of protocol v2: the text the listener heard, a prefix of the text ending on
   * the last word whose start was played, with the marks that close it (all of it when
   * `done`). The relay estimates word timings from the audio (Orpheus gives none). */
  heardText?: string;
  /** The rest of the text: what the listener did not hear. */
  unheardText?: string;
  /** With a relay of protocol v2: how the message went. */
  metrics?: SpeakMetrics;
  /** With a relay of protocol v2: where each word said was, as the relay estimated it from
   * the audio: its characters in the text passed to `speak` and its time in the message. */
  words?: SpokenWord[];
}

/** A word said: its characters in the text the app passed, and when it was said. */
export interface SpokenWord {
  charIndex: number;
  charLength: number;
  startSeconds: number;
  endSeconds: number;
}

/** A word starts at the output (from the engine's play cursor), as the Web Speech API's
 * `SpeechSynthesisUtterance` reports a `boundary`: its properties are on the event itself and
 * in `detail`. */
export interface BoundaryDetail {
  /** The message's id (as in its `SpeakResult`). */
  id: string;
  name: "word";
  /** The word's first character in the text passed to `speak`. */
  charIndex: number;
  charLength: number;
  /** Where in the message's audio the word begins, in seconds. */
  elapsedTime: number;
}

export type BoundaryEvent = CustomEvent<BoundaryDetail> & BoundaryDetail;

/** How the relay reads text: Markdown (the default; its markup is not said) or as it is. */
export type Markup = "markdown" | "plain";

/** How a message went, as the relay saw it (protocol v2). */
export interface SpeakMetrics {
  /** The upstream's time to first byte for the first segment. */
  firstByteMs?: number;
  /** From the relay accepting the `speak` to its first audio frame. */
  firstAudioMs?: number;
  /** Upstream segments requested. */
  segments: number;
  /** Upstream requests retried. */
  retries: number;
  /** The most audio flow control held back in the relay at once. */
  heldBackMs: number;
  /** Segments the relay served from its segment cache (no upstream request). */
  cacheHits: number;
}

export interface SpeakOptions {
  /** One of the ten Orpheus voices; a voice alone implies its model. */
  voice?: string;
  /** `canopylabs/orpheus-v1-english` or `canopylabs/orpheus-arabic-saudi`. */
  model?: string;
  /** Aborting it stops the message. */
  signal?: AbortSignal;
  /** `false` asks the relay for fresh audio of every segment, never its segment cache. */
  cache?: boolean;
  /** How the relay reads the text (default: the session's, itself Markdown by default). */
  markup?: Markup;
}

export interface ConfigureOptions {
  /** How the relay reads this session's messages unless `speak` says otherwise. */
  markup?: Markup;
  /** Whole words said another way, e.g. `{ "Groq": "grok", "SQL": "sequel" }`: at most 200,
   * each one word of 1 to 48 characters said as 1 to 128. `{}` clears it. */
  lexicon?: Record<string, string>;
}

export interface OrpheusPlayerOptions {
  /** The session's WebSocket URL, `wss://…/v1/sessions/{sid}/ws`. */
  url: string;
  /** Called before every connection for the subprotocols to offer, e.g.
   * `["orpheus.v2", "orpheus.v1", "orpheus.ticket." + ticket]`: tickets are single-use. The
   * player always offers `orpheus.v2`. */
  protocols?: () => string[] | Promise<string[]>;
  /** The AudioContext rate to ask for (default 24000, Orpheus's: no resampling). */
  sampleRate?: number;
  /** The engine's initial jitter allowance in milliseconds (default 20). */
  allowanceMs?: number;
  /** `"auto"` (the default): the relay sends Opus (about 34 kbit/s instead of PCM's 384) when
   * the browser decodes it with WebCodecs, else PCM. `"pcm"`: always PCM, bit-exact. */
  encoding?: "auto" | "pcm";
}

export interface StateChangeDetail {
  state: PlayerState;
}

export interface ProgressDetail {
  id: string;
  playedSeconds: number;
  bufferedSeconds: number;
  underruns: number;
}

export interface ErrorDetail {
  /** The WebSocket close code: 4000 replaced, 4401/4403/4503 refused, 1008 flooding, else a
   * drop; 0 when the player's socket worker (socket.js) could not be loaded. */
  code: number;
  reason: string;
  /** True when the player gave up (replaced or refused): it stays closed until `connect()`. */
  fatal: boolean;
}

export interface OrpheusPlayerEventMap {
  statechange: CustomEvent<StateChangeDetail>;
  ready: Event;
  progress: CustomEvent<ProgressDetail>;
  error: CustomEvent<ErrorDetail>;
  boundary: BoundaryEvent;
}

export declare class OrpheusPlayer extends EventTarget {
  constructor(options: OrpheusPlayerOptions);
  readonly state: PlayerState;
  readonly context: AudioContext;
  readonly output: GainNode;
  /** Resolves once the audio engine runs in its worklet. */
  readonly loaded: Promise<void>;
  connect(): void;
  speak(text: string, options?: SpeakOptions): Promise<SpeakResult>;
  /** Speaks text while it is still being written (e.g. a chat completion's text deltas): one
   * message, one result, one stop, however many chunks; speech starts with the first
   * sentence. If the iterable throws, what it gave so far is spoken to the end. */
  speakStream(
    chunks: AsyncIterable<string> | Iterable<string>,
    options?: SpeakOptions,
  ): Promise<SpeakResult>;
  /** Sets the session's defaults for the messages that start after; resolves with the
   * session's settings, rejects with the relay's error (nothing changed). */
  configure(options: ConfigureOptions): Promise<{ markup: Markup; lexicon: number }>;
  stop(): void;
  unlock(): void;
  close(): void;
  addEventListener<K extends keyof OrpheusPlayerEventMap>(
    type: K,
    listener: (this: OrpheusPlayer, event: OrpheusPlayerEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof OrpheusPlayerEventMap>(
    type: K,
    listener: (this: OrpheusPlayer, event: OrpheusPlayerEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
