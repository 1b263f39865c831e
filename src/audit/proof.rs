//! Proofs in the JSON format of the transparency-dev test vectors, and the
//! check a partner runs on its own machine (`ketenpoort audit check-proof`).
//!
//! Inclusion: `{leafIdx, treeSize, root, leafHash, proof}`; consistency:
//! `{size1, size2, root1, root2, proof}`; hashes in standard base64. Any other
//! member (`desc`, `wantErr`) is ignored. Garbage is an error, never a panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::merkle::{self, Hash};

/// An inclusion proof as JSON.
pub fn inclusion_json(index: u64, size: u64, root: &Hash, leaf: &Hash, proof: &[Hash]) -> Value {
    json!({
        "leafIdx": index,
        "treeSize": size,
        "root": B64.encode(root),
        "leafHash": B64.encode(leaf),
        "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    })
}

/// A consistency proof as JSON.
pub fn consistency_json(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Value {
    json!({
        "size1": size1,
        "size2": size2,
        "root1": B64.encode(root1),
        "root2": B64.encode(root2),
        "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    })
}

fn num(v: &Value, k: &str) -> Result<u64, String> {
    v.get(k)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("'{k}' must be a non-negative integer"))
}

fn bytes(v: &Value, k: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("'{k}' must be a base64 string"))?;
    B64.decode(s)
        .map_err(|_| format!("'{k}' is not valid base64"))
}

fn proof(v: &Value) -> Result<Vec<Vec<u8>>, String> {
    match v.get("proof") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| "proof entries must be base64 strings".to_string())
                    .and_then(|s| {
                        B64.decode(s)
                            .map_err(|_| "a proof entry is not valid base64".to_string())
                    })
            })
            .collect(),
        Some(_) => Err("'proof' must be a list".into()),
    }
}

/// Checks a proof given as JSON text. `Ok` says what was proved.
pub fn check(text: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a proof object".into());
    }
    if v.get("leafIdx").is_some() {
        let (i, n) = (num(&v, "leafIdx")?, num(&v, "treeSize")?);
        merkle::verify_inclusion(
            i,
            n,
            &bytes(&v, "leafHash")?,
            &proof(&v)?,
            &bytes(&v, "root")?,
        )
        .map_err(|e| e.to_string())?;
        Ok(format!("valid: leaf {i} is in the tree of {n} records"))
    } else if v.get("size1").is_some() {
        let (a, b) = (num(&v, "size1")?, num(&v, "size2")?);
        merkle::verify_consistency(
            a,
            b,
            &proof(&v)?,
            &bytes(&v, "root1")?,
            &bytes(&v, "root2")?,
        )
        .map_err(|e| e.to_string())?;
        Ok(format!(
            "valid: the tree of {b} records extends the tree of {a}"
        ))
    } else {
        Err("neither an inclusion proof (leafIdx) nor a consistency proof (size1)".into())
    }
}
