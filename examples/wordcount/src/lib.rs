//! `wordcount.count`: statistics about a piece of text.

use steinadler::serde::{Deserialize, Serialize};

/// The input: JSON `{"text": "...", "min_len": 3}`, where `min_len` may be left out.
#[derive(Deserialize)]
#[serde(crate = "steinadler::serde")]
struct Doc {
    text: String,
    min_len: Option<usize>,
}

/// The output, which the CLI prints as a JSON object.
#[derive(Serialize)]
#[serde(crate = "steinadler::serde")]
struct Stats {
    words: usize,
    longest: String,
    node: String,
}

/// Counts the words of at least `min_len` characters and finds the longest.
#[steinadler::function]
fn count(doc: Doc) -> Result<Stats, String> {
    let min = doc.min_len.unwrap_or(1);
    let words: Vec<&str> = doc
        .text
        .split_whitespace()
        .filter(|w| w.chars().count() >= min)
        .collect();
    let Some(longest) = words.iter().max_by_key(|w| w.chars().count()) else {
        return Err(format!("no words of {min} or more characters"));
    };
    steinadler::log::info!("counted {} words", words.len());
    Ok(Stats {
        words: words.len(),
        longest: longest.to_string(),
        node: steinadler::node_name(),
    })
}
