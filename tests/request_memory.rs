//! Memory a translated request takes: the peak heap while a request body
//! is parsed into the canonical model and built in the provider's format,
//! measured with a counting allocator, for every translation direction and
//! for the shapes large requests take (one huge message, a long history,
//! a big image). The body itself counts until the translation lets it go.
//! A `serde_json::Value` tree of the whole body cost 5-9.5x the body here
//! (15x in RSS through the gateway); the target is at most 3x.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::sync::Mutex;
use tollgate::formats::translate::{self, Target};
use tollgate::formats::ClientFormat;

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// One test at a time: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

/// Peak heap above the starting point while `f` runs, in bytes.
fn peak_of(f: impl FnOnce()) -> usize {
    let start = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    f();
    ALLOCATOR.peak_usage() - start
}

const MB: usize = 1 << 20;

fn text(n: usize) -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(n / 45 + 1)[..n].to_string()
}

/// A request shape: its name, its turns (role, text) and an image.
type Shape<'a> = (&'static str, Vec<(String, String)>, Option<&'a str>);

/// (shape, body) for `format`, each about `size` bytes.
fn bodies(format: ClientFormat, size: usize) -> Vec<(&'static str, Vec<u8>)> {
    let history = |n: usize, each: usize| -> Vec<(String, String)> {
        (0..n).map(|i| (if i % 2 == 0 { "user" } else { "assistant" }.to_string(), text(each))).collect()
    };
    let image = "iVBORw0KGgo".repeat(size / 11);
    let shapes: Vec<Shape<'_>> = vec![
        ("one huge message", vec![("user".into(), text(size))], None),
        ("long history", history(size / 300, 300 - 40), None),
        ("tiny turns", history(size / 40, 8), None),
        ("big image", vec![("user".into(), "what is this?".into())], Some(image.as_str())),
    ];
    shapes
        .into_iter()
        .map(|(shape, turns, image)| {
            let body = match format {
                ClientFormat::Openai => {
                    let mut messages: Vec<Value> =
                        turns.iter().map(|(r, t)| json!({"role": r, "content": t})).collect();
                    if let Some(img) = image {
                        messages.push(json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{img}")}}]}));
                    }
                    json!({"model": "m", "messages": messages})
                }
                ClientFormat::Responses => {
                    let mut input: Vec<Value> =
                        turns.iter().map(|(r, t)| json!({"role": r, "content": t})).collect();
                    if let Some(img) = image {
                        input.push(json!({"role": "user", "content": [{"type": "input_image", "image_url": format!("data:image/png;base64,{img}")}]}));
                    }
                    json!({"model": "m", "input": input})
                }
                ClientFormat::Anthropic => {
                    let mut messages: Vec<Value> =
                        turns.iter().map(|(r, t)| json!({"role": r, "content": t})).collect();
                    if let Some(img) = image {
                        messages.push(json!({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": img}}]}));
                    }
                    json!({"model": "m", "max_tokens": 10, "messages": messages})
                }
                ClientFormat::Gemini => {
                    let mut contents: Vec<Value> = turns
                        .iter()
                        .map(|(r, t)| json!({"role": if r == "user" { "user" } else { "model" }, "parts": [{"text": t}]}))
                        .collect();
                    if let Some(img) = image {
                        contents.push(json!({"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": img}}]}));
                    }
                    json!({"contents": contents})
                }
            };
            (shape, serde_json::to_vec(&body).unwrap())
        })
        .collect()
}

#[test]
fn a_translated_request_takes_at_most_three_times_its_size() {
    let _one = SERIAL.lock().unwrap();
    let mut worst: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    for client in ClientFormat::ALL {
        for provider in ClientFormat::ALL {
            let Some(t) = translate::translator(client, provider) else { continue };
            for (shape, body) in bodies(client, 4 * MB) {
                let size = body.len();
                let body = bytes::Bytes::from(body);
                // The body is on the heap already: it counts, until the
                // translation lets it go.
                let peak = size
                    + peak_of(move || {
                        let (_, out) = translate::translate_request(t, body, Target::Native, |r| {
                            r.model = "provider-model".into();
                        })
                        .unwrap();
                        assert!(out.len() > size / 2);
                    });
                let ratio = peak as f64 / size as f64;
                let line = format!("{client} -> {provider}, {shape}: {:.2}x", ratio);
                if ratio > 3.0 {
                    failures.push(line.clone());
                }
                worst.push(line);
            }
        }
    }
    println!("{}", worst.join("\n"));
    assert!(failures.is_empty(), "over 3x the body:\n{}", failures.join("\n"));
}
