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
  /** From `speak` to completion. */
  totalSeconds: number;
  error?: SpeakError;
  /** With a relay of protocol v2: the text the listener heard, a prefix of the text ending on
   * a word (all of it when `done`). An estimate: Orpheus gives no word timings. */
  heardText?: string;
  /** The rest of the text: what the listener did not hear. */
  unheardText?: string;
  /** With a relay of protocol v2: how the message went. */
  metrics?: SpeakMetrics;
}

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
