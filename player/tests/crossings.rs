//! What crosses between Rust and the player's JavaScript, held to its Rust source: the
//! worklet's constants (the engine's event bits and push codes, the report period, the frame
//! header it reads), the layout of an engine report on its way from the worklet through the
//! page to the core, the effects the core emits and the page executes, the engine's copy of the
//! protocol's constants, where the socket's Worker reads an Opus frame, and the core's exports
//! as its glue calls them. A change on one
//! side fails here until the other follows.

use orpheus_player::core::ReportKind;
use orpheus_player_dsp::{engine, event, Push};
use orpheus_protocol::{codec, AudioFrame};

const WORKLET: &str = include_str!("../js/worklet.js");
const INDEX: &str = include_str!("../js/index.js");
const WEB: &str = include_str!("../src/web.rs");
const SOCKET: &str = include_str!("../js/socket.js");
const CORE_JS: &str = include_str!("../js/core.js");
const FFI: &str = include_str!("../src/ffi.rs");

/// The value of `const NAME = …;` in `source`: whole numbers, joined by `|`, or one decimal.
fn js_const(source: &str, name: &str) -> f64 {
    let start = format!("const {name} = ");
    let line = source
        .lines()
        .find_map(|l| l.trim().strip_prefix(&start))
        .unwrap_or_else(|| panic!("no `const {name}` in the script"));
    let expr = line.split(';').next().unwrap_or_default();
    if expr.contains('.') {
        return expr.trim().parse().expect("a number");
    }
    expr.split('|')
        .map(|n| n.trim().parse::<u32>().expect("a whole number"))
        .fold(0, |bits, n| bits | n)
        .into()
}

/// The comma-separated items between `open` (found after `after`) and the next `close`.
fn list_after<'a>(source: &'a str, after: &str, open: char, close: char) -> Vec<&'a str> {
    let at = source
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in the source"));
    let rest = &source[at + after.len()..];
    let rest = &rest[rest.find(open).expect("an opening") + 1..];
    rest[..rest.find(close).expect("a closing")]
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

#[test]
fn the_worklets_constants_are_the_engines() {
    assert_eq!(js_const(WORKLET, "PROGRESS"), f64::from(event::PROGRESS));
    assert_eq!(
        js_const(WORKLET, "OVER"),
        f64::from(event::DRAINED | event::STOPPED)
    );
    assert_eq!(
        js_const(WORKLET, "ACCEPTED"),
        f64::from(Push::Accepted as u32)
    );
    assert_eq!(js_const(WORKLET, "FULL"), f64::from(Push::Full as u32));
    assert_eq!(js_const(WORKLET, "AHEAD"), f64::from(Push::Ahead as u32));
    assert_eq!(js_const(WORKLET, "RECEIVED"), f64::from(event::RECEIVED));
    assert!(
        WEB.contains(r#".bool("reports", *reports)"#)
            && WORKLET.contains("this.reporting = data.reports;"),
        "the engine's `begin` carries `reports` from the core to the worklet"
    );
    assert_eq!(
        js_const(WORKLET, "REPORT_EVERY_S") * 1000.0,
        orpheus_protocol::REPORT_INTERVAL_MS as f64,
        "a live stream is reported as often as the protocol asks"
    );
    assert_eq!(
        js_const(WORKLET, "PLENTY_S") * 1000.0,
        orpheus_protocol::PLENTY_MS as f64,
        "a stream with plenty buffered is reported less often from where the protocol says"
    );
    assert_eq!(
        js_const(WORKLET, "SPARSE_REPORT_EVERY_S") * 1000.0,
        orpheus_protocol::SPARSE_REPORT_INTERVAL_MS as f64,
        "and as often as it says"
    );
}

#[test]
fn the_worklet_reads_a_frames_stream_where_the_protocol_puts_it() {
    assert!(
        WORKLET.contains("new DataView(frame.buffer, frame.byteOffset, 8).getUint32(4, true)"),
        "the worklet's streamOf changed: check it against the frame header"
    );
    let frame = AudioFrame {
        flags: 0,
        stream: 0x0102_0304,
        offset: 0,
        pcm: &[0, 0],
    }
    .encode();
    assert_eq!(frame[4..8], 0x0102_0304u32.to_le_bytes());
}

#[test]
fn the_socket_worker_reads_opus_frames_where_the_protocol_puts_them() {
    assert_eq!(
        js_const(SOCKET, "OPUS"),
        f64::from(orpheus_protocol::OPUS_FRAME_VERSION)
    );
    assert_eq!(
        js_const(SOCKET, "RUN_START"),
        f64::from(orpheus_protocol::RUN_START)
    );
    assert_eq!(
        js_const(SOCKET, "RUN_END"),
        f64::from(orpheus_protocol::RUN_END)
    );
    assert!(
        SOCKET.contains("view.getUint8(1) & RUN_END"),
        "the socket's Worker reads a run's end from the flags"
    );
    let mut packets = Vec::new();
    orpheus_protocol::OpusFrame::put_packet(&mut packets, &[0xAA; 3]);
    let frame = orpheus_protocol::OpusFrame {
        flags: orpheus_protocol::RUN_START,
        delay: 0x0506,
        stream: 0x0102_0304,
        offset: 0x1112_1314,
        samples: 0x2122_2324,
        packets: &packets,
    }
    .encode();
    // Each field where socket.js reads it, and the packets from byte 16 on.
    for (read, at, bytes) in [
        ("view.getUint8(1)", 1, vec![orpheus_protocol::RUN_START]),
        (
            "view.getUint16(2, true)",
            2,
            0x0506u16.to_le_bytes().to_vec(),
        ),
        (
            "view.getUint32(4, true)",
            4,
            0x0102_0304u32.to_le_bytes().to_vec(),
        ),
        (
            "view.getUint32(8, true)",
            8,
            0x1112_1314u32.to_le_bytes().to_vec(),
        ),
        (
            "view.getUint32(12, true)",
            12,
            0x2122_2324u32.to_le_bytes().to_vec(),
        ),
    ] {
        assert!(SOCKET.contains(read), "socket.js no longer reads {read}");
        assert_eq!(frame[at..at + bytes.len()], bytes[..], "{read}");
    }
    assert!(SOCKET.contains("for (let at = 16;"));
    assert_eq!(orpheus_protocol::OPUS_HEADER_LEN, 16);
    // What it hands the engine is a PCM frame, as the relay writes them.
    assert!(
        SOCKET.contains("new ArrayBuffer(12 + 2 * count)")
            && SOCKET.contains("head.setUint8(0, 1)")
    );
    assert_eq!(
        (
            orpheus_protocol::FRAME_HEADER_LEN,
            orpheus_protocol::FRAME_VERSION
        ),
        (12, 1)
    );
}

#[test]
fn the_socket_workers_played_is_the_codecs() {
    let template = r#"`{"type":"played","stream":${stream},"played":${played},"received":${received}${onReceipt ? ',"on_receipt":true' : ""}}`"#;
    assert!(
        SOCKET.contains(template),
        "the socket Worker's `played` changed: check it against the codec"
    );
    for on_receipt in [false, true] {
        let filled = template
            .trim_matches('`')
            .replace("${stream}", "7")
            .replace("${played}", "36000")
            .replace("${received}", "38400")
            .replace(
                r#"${onReceipt ? ',"on_receipt":true' : ""}"#,
                if on_receipt {
                    r#","on_receipt":true"#
                } else {
                    ""
                },
            );
        assert_eq!(filled, codec::played(7, 36_000, 38_400, on_receipt));
    }
    assert!(
        WORKLET.contains("this.frames.postMessage([dsp.orpheus_stream(), played, played + dsp.orpheus_buffered(), received ? 1 : 0])")
            && SOCKET.contains("({ data: [stream, played, received, onReceipt] }) => report(stream, played, received, onReceipt)"),
        "the worklet's report layout changed: check the socket Worker reads it as sent"
    );
}

#[test]
fn the_core_reads_the_engines_event_bits() {
    let engine_bit = |kind| match kind {
        ReportKind::Started => event::STARTED,
        ReportKind::Progress => event::PROGRESS,
        ReportKind::Underrun => event::UNDERRUN,
        ReportKind::Drained => event::DRAINED,
        ReportKind::Stopped => event::STOPPED,
        ReportKind::Word => event::WORD,
    };
    for (bit, kind) in ReportKind::BITS {
        assert_eq!(bit, engine_bit(kind), "{kind:?}");
    }
}

#[test]
fn an_engine_report_keeps_its_layout_from_the_worklet_to_the_core() {
    // What the worklet posts, what the page takes apart and hands on, what the core takes.
    let posted = list_after(WORKLET, "this.port.postMessage(", '[', ']');
    let taken = list_after(INDEX, "\n  #report(", '[', ']');
    let handed = list_after(INDEX, "this.#core.engine", '(', ')');
    let signature = list_after(WEB, "pub fn engine", '(', ')');
    let expected = [
        "events",
        "stream",
        "played",
        "buffered",
        "underruns",
        "at",
        "words",
    ];
    assert_eq!(taken, expected);
    assert_eq!(&handed[..7], expected);
    let parameters: Vec<&str> = signature
        .iter()
        .filter_map(|p| p.split(':').next().map(str::trim))
        .filter(|p| *p != "&mut self")
        .collect();
    assert_eq!(&parameters[..7], expected);
    // The worklet's values, by the engine export each comes from.
    let sources = [
        "events",
        "dsp.orpheus_stream()",
        "dsp.orpheus_played()",
        "dsp.orpheus_buffered()",
        "dsp.orpheus_underruns()",
        "currentTime",
        "dsp.orpheus_words_passed()",
    ];
    assert_eq!(posted, sources);
}

#[test]
fn the_page_executes_every_effect_the_core_emits() {
    let emitted: Vec<&str> = WEB
        .match_indices("kind(\"")
        .map(|(at, _)| {
            let rest = &WEB[at + 6..];
            &rest[..rest.find('"').expect("a closing quote")]
        })
        .chain(["complete"])
        .collect();
    assert!(emitted.len() >= 9, "{emitted:?}");
    for kind in emitted {
        assert!(
            INDEX.contains(&format!("case \"{kind}\":")),
            "the page does not execute the core's {kind:?} effect"
        );
    }
}

#[test]
fn the_engines_copies_of_the_protocols_constants_agree() {
    assert_eq!(engine::FRAME_HEADER_LEN, orpheus_protocol::FRAME_HEADER_LEN);
    assert_eq!(engine::FRAME_VERSION, orpheus_protocol::FRAME_VERSION);
    assert_eq!(
        (engine::PROMPT_BELOW_S * 1000.0) as u64,
        orpheus_protocol::PROMPT_BELOW_MS
    );
    assert_eq!(
        (engine::PROGRESS_S * 1000.0) as u64,
        orpheus_protocol::REPORT_INTERVAL_MS
    );
}

#[test]
fn the_glue_calls_each_export_as_it_is_declared() {
    // `this.#call("name", [strings], numbers…)`: export `orpheus_name` takes the handle, a
    // length (i32) for each string, then the numbers.
    let calls: Vec<_> = CORE_JS
        .match_indices("this.#call(\"")
        .map(|(at, _)| {
            let rest = &CORE_JS[at + 12..];
            let name = &rest[..rest.find('"').expect("a closing quote")];
            let strings = list_after(rest, "", '[', ']').len();
            let after_strings = &rest[rest.find(']').expect("the strings' end") + 1..];
            let numbers = after_strings[..after_strings.find(')').expect("the call's end")]
                .split(',')
                .filter(|n| !n.trim().is_empty())
                .count();
            (name, strings, numbers)
        })
        .collect();
    assert!(calls.len() >= 14, "{calls:?}");
    for (name, strings, numbers) in calls {
        let parameters = list_after(FFI, &format!("fn orpheus_{name}"), '(', ')');
        let types: Vec<&str> = parameters
            .iter()
            .map(|p| p.split(':').nth(1).expect("a typed parameter").trim())
            .collect();
        assert_eq!(
            types.len(),
            1 + strings + numbers,
            "orpheus_{name}: {types:?}"
        );
        assert_eq!(types[0], "u32", "orpheus_{name} takes the handle first");
        assert!(
            types[1..=strings].iter().all(|t| *t == "i32"),
            "orpheus_{name}: {strings} string lengths first, in {types:?}"
        );
    }
    // The calls without strings, straight to their export.
    for (at, _) in CORE_JS.match_indices("wasm.orpheus_") {
        let rest = &CORE_JS[at + 5..];
        let name = &rest[..rest.find('(').expect("a call")];
        assert!(
            FFI.contains(&format!("pub extern \"C\" fn {name}(")),
            "core.js calls {name}, which src/ffi.rs does not export"
        );
    }
}
