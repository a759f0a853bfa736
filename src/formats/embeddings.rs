//! Embeddings in OpenAI's format (`POST /v1/embeddings`): the request as
//! callers send it (a string, a list of strings, a token array or a list
//! of them; `dimensions`; `encoding_format` float or base64), the input
//! tokens a call is held for, and the translation to Gemini's
//! `batchEmbedContents` and back (vectors in input order, base64 encoded
//! here when the caller asked for it: Gemini only answers floats).

use super::usage::Usage;
use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The most inputs one call may carry (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

/// What to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inputs {
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

/// An embeddings request, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Inputs,
    pub dimensions: Option<u32>,
    pub base64: bool,
}

#[derive(Deserialize)]
struct Wire<'a> {
    model: Option<String>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    dimensions: Option<&'a RawValue>,
    encoding_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl EmbeddingsRequest {
    /// Reads a body; `Err` says what is wrong with it, for a 400.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let wire: Wire<'_> = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
        let model = wire.model.ok_or("'model' is required")?;
        let input = wire.input.ok_or("'input' is required")?;
        let inputs = match serde_json::from_str::<WireInput>(input.get()) {
            Ok(WireInput::Text(t)) => Inputs::Texts(vec![t]),
            Ok(WireInput::Texts(t)) => Inputs::Texts(t),
            Ok(WireInput::Tokens(t)) => Inputs::Tokens(vec![t]),
            Ok(WireInput::TokenLists(t)) => Inputs::Tokens(t),
            Err(_) => {
                return Err("'input' must be a string, an array of strings, an array of token ids or an \
                            array of such arrays"
                    .into())
            }
        };
        let count = match &inputs {
            Inputs::Texts(t) => {
                if t.iter().any(String::is_empty) {
                    return Err("'input' cannot contain an empty string".into());
                }
                t.len()
            }
            Inputs::Tokens(t) => {
                if t.iter().any(Vec::is_empty) {
                    return Err("'input' cannot contain an empty token array".into());
                }
                t.len()
            }
        };
        if count == 0 {
            return Err("'input' cannot be an empty array".into());
        }
        if count > MAX_INPUTS {
            return Err(format!("'input' can hold at most {MAX_INPUTS} items"));
        }
        let dimensions = match wire.dimensions.map(|d| d.get()) {
            None | Some("null") => None,
            Some(raw) => match raw.parse::<u32>() {
                Ok(d) if d > 0 => Some(d),
                _ => return Err("'dimensions' must be a positive integer".into()),
            },
        };
        let base64 = match wire.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => return Err(format!("'encoding_format' must be float or base64, not '{other}'")),
        };
        Ok(Self { model, inputs, dimensions, base64 })
    }

    /// How many vectors the answer carries.
    pub fn count(&self) -> usize {
        match &self.inputs {
            Inputs::Texts(t) => t.len(),
            Inputs::Tokens(t) => t.len(),
        }
    }

    /// Input tokens: a token array's length, or a token for every four
    /// bytes of a text (at least one each): what a call is held for, and
    /// billed at when the provider counts nothing (Gemini).
    pub fn input_tokens(&self) -> u64 {
        match &self.inputs {
            Inputs::Texts(t) => t.iter().map(|s| (s.len() as u64).div_ceil(4).max(1)).sum(),
            Inputs::Tokens(t) => t.iter().map(|v| v.len() as u64).sum(),
        }
    }

    /// Gemini's `batchEmbedContents` body for `upstream_model`; `Err` for
    /// token arrays, which only OpenAI's models take.
    pub fn to_gemini(&self, upstream_model: &str) -> Result<Vec<u8>, String> {
        let Inputs::Texts(texts) = &self.inputs else {
            return Err("token arrays as 'input' are only accepted by OpenAI embedding models".into());
        };
        let model = format!("models/{upstream_model}");
        let requests: Vec<serde_json::Value> = texts
            .iter()
            .map(|text| {
                let mut one =
                    serde_json::json!({ "model": model, "content": { "parts": [{ "text": text }] } });
                if let Some(d) = self.dimensions {
                    one["outputDimensionality"] = d.into();
                }
                one
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "requests": requests })).map_err(|e| e.to_string())
    }
}

#[derive(Deserialize)]
struct GeminiAnswer {
    embeddings: Vec<GeminiEmbedding>,
}

#[derive(Deserialize)]
struct GeminiEmbedding {
    values: Vec<f64>,
}

/// What the caller asked, to answer a translated call with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answering {
    /// The model as the caller named it.
    pub model: String,
    pub base64: bool,
    pub count: usize,
    pub input_tokens: u64,
}

/// Gemini's `batchEmbedContents` answer in OpenAI's shape, and the usage
/// it is billed at (Gemini counts no tokens: the gateway's own count).
/// `Err` when the answer is not one vector per input.
pub fn from_gemini(body: &[u8], asked: &Answering) -> Result<(Vec<u8>, Usage), String> {
    let answer: GeminiAnswer = serde_json::from_slice(body)
        .map_err(|e| format!("the provider's embeddings answer is unreadable: {e}"))?;
    if answer.embeddings.len() != asked.count {
        return Err(format!(
            "the provider answered {} vectors for {} inputs",
            answer.embeddings.len(),
            asked.count
        ));
    }
    let data: Vec<serde_json::Value> = answer
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let embedding = if asked.base64 {
                serde_json::Value::String(base64_floats(&e.values))
            } else {
                e.values.clone().into()
            };
            serde_json::json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let tokens = asked.input_tokens;
    let doc = serde_json::json!({
        "object": "list",
        "data": data,
        "model": asked.model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    });
    let usage = Usage { input_tokens: tokens, ..Usage::default() };
    serde_json::to_vec(&doc).map(|body| (body, usage)).map_err(|e| e.to_string())
}

/// Gemini's whole answer (`status`, `body`) as the caller gets it in
/// OpenAI's format: `(status, body, usage)`; an error keeps its status,
/// and an answer that cannot be read is a 502.
pub fn answer(status: u16, body: &[u8], asked: &Answering) -> (u16, Vec<u8>, Option<Usage>) {
    use super::errors::render;
    use super::ClientFormat;
    use crate::error::GatewayError;
    if !(200..300).contains(&status) {
        let err = super::translate::parse_error_document(status, body);
        return (err.status(), render(&err, ClientFormat::Openai), None);
    }
    match from_gemini(body, asked) {
        Ok((out, usage)) => (200, out, Some(usage)),
        Err(why) => {
            let err = GatewayError::UpstreamProtocol(why);
            (err.status(), render(&err, ClientFormat::Openai), None)
        }
    }
}

/// A vector as OpenAI's `encoding_format: base64` sends it: the
/// little-endian bytes of its 32-bit floats, in standard base64.
pub fn base64_floats(values: &[f64]) -> String {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        // Narrowing to f32 is the format's own precision.
        #[allow(clippy::cast_possible_truncation)]
        bytes.extend_from_slice(&(*v as f32).to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_is_read() {
        let one = EmbeddingsRequest::parse(br#"{"model":"m","input":"hello world"}"#).unwrap();
        assert_eq!(one.inputs, Inputs::Texts(vec!["hello world".into()]));
        assert_eq!(one.input_tokens(), 3);
        let many = EmbeddingsRequest::parse(br#"{"model":"m","input":["a","bb"],"dimensions":4}"#).unwrap();
        assert_eq!((many.count(), many.dimensions), (2, Some(4)));
        let tokens = EmbeddingsRequest::parse(br#"{"model":"m","input":[1,2,3]}"#).unwrap();
        assert_eq!((tokens.inputs.clone(), tokens.input_tokens()), (Inputs::Tokens(vec![vec![1, 2, 3]]), 3));
        let lists =
            EmbeddingsRequest::parse(br#"{"model":"m","input":[[1],[2,3]],"encoding_format":"base64"}"#)
                .unwrap();
        assert_eq!((lists.count(), lists.base64, lists.input_tokens()), (2, true, 3));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (body, says) in [
            (&br#"{"input":"x"}"#[..], "'model'"),
            (br#"{"model":"m"}"#, "'input' is required"),
            (br#"{"model":"m","input":""}"#, "empty string"),
            (br#"{"model":"m","input":[]}"#, "empty array"),
            (br#"{"model":"m","input":{"a":1}}"#, "must be a string"),
            (br#"{"model":"m","input":["a",1]}"#, "must be a string"),
            (br#"{"model":"m","input":"a","dimensions":0}"#, "'dimensions'"),
            (br#"{"model":"m","input":"a","dimensions":"8"}"#, "'dimensions'"),
            (br#"{"model":"m","input":"a","encoding_format":"int8"}"#, "'encoding_format'"),
            (b"not json", "invalid JSON"),
        ] {
            let e = EmbeddingsRequest::parse(body).unwrap_err();
            assert!(e.contains(says), "{}: {e}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn gemini_gets_one_request_per_input_and_answers_in_order() {
        let r = EmbeddingsRequest::parse(br#"{"model":"m","input":["a","b"],"dimensions":3}"#).unwrap();
        let sent: serde_json::Value =
            serde_json::from_slice(&r.to_gemini("text-embedding-004").unwrap()).unwrap();
        assert_eq!(sent["requests"][1]["content"]["parts"][0]["text"], "b");
        assert_eq!(sent["requests"][0]["model"], "models/text-embedding-004");
        assert_eq!(sent["requests"][0]["outputDimensionality"], 3);
        let asked = Answering { model: "embed".into(), base64: false, count: 2, input_tokens: 2 };
        let (body, usage) =
            from_gemini(br#"{"embeddings":[{"values":[0.5,1]},{"values":[-1,0.25]}]}"#, &asked).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["data"][1]["index"], 1);
        assert_eq!(doc["data"][1]["embedding"][1], 0.25);
        assert_eq!(doc["usage"]["prompt_tokens"], 2);
        assert_eq!(usage.input_tokens, 2);
        assert!(from_gemini(br#"{"embeddings":[{"values":[1]}]}"#, &asked).is_err());
        let tokens = EmbeddingsRequest::parse(br#"{"model":"m","input":[1,2]}"#).unwrap();
        assert!(tokens.to_gemini("x").is_err());
    }

    #[test]
    fn base64_is_little_endian_f32() {
        // 1.0f32 = 00 00 80 3f; -2.0f32 = 00 00 00 c0.
        assert_eq!(base64_floats(&[1.0, -2.0]), "AACAPwAAAMA=");
    }
}
