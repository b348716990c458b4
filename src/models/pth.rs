//! Reader for PyTorch weight files written by `torch.save`: the zip archive of PyTorch ≥ 1.6
//! (`archive/data.pkl` plus one raw entry per storage) and the older single-stream format
//! (five pickles, then the storages back to back). Only what tensors need is interpreted; no
//! Python object is ever constructed, so a file cannot run code.
//!
//! Why not a crate: serde-pickle has no persistent ids (how torch refers to storages), and
//! libtorch's own `pickle_load` stops at an internal assert on `state_dict()` files.
//!
//! Over 500 lines on purpose: one self-contained reader of the pickle format (both archive layouts); the last 48 lines are its tests.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

/// Magic number of the legacy format's first pickle.
const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

/// A value of the pickle machine. Objects it does not know stay opaque (`Object`).
#[derive(Clone, Debug)]
enum Val {
    None,
    /// A bool or float: nothing a tensor needs reads their values.
    Scalar,
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Val>),
    List(Vec<Val>),
    Dict(Vec<(Val, Val)>),
    /// `module.name` of a class or function.
    Global(String),
    Storage {
        key: String,
        kind: Kind,
    },
    Tensor(TensorRef),
    Object(String),
    Mark,
}

#[derive(Clone, Debug)]
struct TensorRef {
    key: String,
    kind: Kind,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class.strip_prefix("torch.")? {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn int_list(v: &Val) -> Option<Vec<i64>> {
    match v {
        Val::Tuple(items) | Val::List(items) => items
            .iter()
            .map(|i| match i {
                Val::Int(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A pickle stream interpreter for the opcodes `torch.save` emits (protocols 2–5).
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Val>,
    memo: HashMap<u32, Val>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("truncated pickle at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> std::result::Result<u64, String> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
    }

    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("unterminated text in pickle")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> std::result::Result<Val, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    /// Everything above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> std::result::Result<Vec<Val>, String> {
        let m = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Val::Mark))
            .ok_or("pickle has no mark to pop to")?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }

    fn text(&mut self, n: usize) -> std::result::Result<Val, String> {
        let b = self.take(n)?;
        Ok(Val::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn bytes(&mut self, n: usize) -> std::result::Result<Val, String> {
        Ok(Val::Bytes(self.take(n)?.to_vec()))
    }

    /// Runs to STOP and returns the pickled object.
    fn run(&mut self) -> std::result::Result<Val, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME: framing only
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Val::Mark),
                b'}' => self.stack.push(Val::Dict(Vec::new())),
                b']' => self.stack.push(Val::List(Vec::new())),
                b')' => self.stack.push(Val::Tuple(Vec::new())),
                b'N' => self.stack.push(Val::None),
                0x88 | 0x89 => self.stack.push(Val::Scalar),
                b'J' => {
                    let v = self.le(4)? as u32 as i32 as i64;
                    self.stack.push(Val::Int(v))
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Val::Int(v))
                }
                b'M' => {
                    let v = self.le(2)? as i64;
                    self.stack.push(Val::Int(v))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        // Wider than i64 (the legacy format's magic number): raw bytes.
                        self.stack.push(Val::Bytes(b.to_vec()));
                        continue;
                    }
                    let mut v = b.iter().rev().fold(0i64, |a, &x| (a << 8) | x as i64);
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Val::Int(v))
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Val::Scalar)
                }
                b'X' => {
                    let n = self.le(4)? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v)
                }
                0x8d => {
                    let n = self.le(8)? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v)
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    let v = self.bytes(n)?;
                    self.stack.push(v)
                }
                b'T' | b'B' => {
                    let n = self.le(4)? as usize;
                    let v = self.bytes(n)?;
                    self.stack.push(v)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Val::Global(format!("{module}.{name}")))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Val::Str(m), Val::Str(n)) => {
                            self.stack.push(Val::Global(format!("{m}.{n}")))
                        }
                        _ => return Err(format!("STACK_GLOBAL without names at byte {at}")),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Val::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Val::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Val::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    self.stack.push(Val::Dict(pairs))
                }
                b'a' => {
                    let v = self.pop()?;
                    // Appends to an opaque object are dropped.
                    if let Some(Val::List(l)) = self.stack.last_mut() {
                        l.push(v)
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Some(Val::List(l)) = self.stack.last_mut() {
                        l.extend(items)
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Some(Val::Dict(d)) = self.stack.last_mut() {
                        d.push((k, v))
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let p = pairs(items)?;
                    if let Some(Val::Dict(d)) = self.stack.last_mut() {
                        d.extend(p)
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args).map_err(|e| format!("{e} (byte {at})"))?;
                    self.stack.push(v)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); kept opaque.
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let name = match cls {
                        Val::Global(g) => g,
                        _ => "?".into(),
                    };
                    self.stack.push(Val::Object(name))
                }
                b'b' => {
                    // BUILD sets state (an OrderedDict's `_metadata`, an object's fields):
                    // nothing that tensors need.
                    self.pop()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid).map_err(|e| format!("{e} (byte {at})"))?;
                    self.stack.push(v)
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.put(i)?
                }
                b'r' => {
                    let i = self.le(4)? as u32;
                    self.put(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.get(i)?
                }
                b'j' => {
                    let i = self.le(4)? as u32;
                    self.get(i)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.stack.last().cloned().ok_or("pickle stack underflow")?;
                    self.stack.push(v)
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {at}"
                    ));
                }
            }
        }
    }

    fn put(&mut self, i: u32) -> std::result::Result<(), String> {
        let v = self.stack.last().cloned().ok_or("pickle stack underflow")?;
        self.memo.insert(i, v);
        Ok(())
    }

    fn get(&mut self, i: u32) -> std::result::Result<(), String> {
        let v = self
            .memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("pickle refers to unknown memo entry {i}"))?;
        self.stack.push(v);
        Ok(())
    }
}

fn pairs(items: Vec<Val>) -> std::result::Result<Vec<(Val, Val)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// `callable(*args)` for the few callables a weight file uses.
fn reduce(callable: Val, args: Val) -> std::result::Result<Val, String> {
    let Val::Global(name) = callable else {
        return Ok(Val::Object("?".into()));
    };
    let args = match args {
        Val::Tuple(a) => a,
        _ => Vec::new(),
    };
    match name.as_str() {
        "collections.OrderedDict" => Ok(Val::Dict(Vec::new())),
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
            let bad = || format!("malformed tensor record ({name})");
            let Some(Val::Storage { key, kind }) = args.first() else {
                return Err(bad());
            };
            let offset = match args.get(1) {
                Some(Val::Int(o)) => *o,
                _ => return Err(bad()),
            };
            let size = args.get(2).and_then(int_list).ok_or_else(bad)?;
            let stride = args.get(3).and_then(int_list).ok_or_else(bad)?;
            if size.len() != stride.len() {
                return Err(bad());
            }
            Ok(Val::Tensor(TensorRef {
                key: key.clone(),
                kind: *kind,
                offset,
                size,
                stride,
            }))
        }
        // An `nn.Parameter`: its tensor.
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => args
            .into_iter()
            .next()
            .ok_or_else(|| format!("{name} without a tensor")),
        _ => Ok(Val::Object(name)),
    }
}

/// torch's persistent id for a storage: ('storage', StorageClass, key, location, numel, …).
fn persistent_load(pid: Val) -> std::result::Result<Val, String> {
    let Val::Tuple(t) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match (t.first(), t.get(1), t.get(2)) {
        (Some(Val::Str(tag)), Some(Val::Global(class)), Some(Val::Str(key)))
            if tag == "storage" =>
        {
            let kind =
                storage_kind(class).ok_or_else(|| format!("unsupported storage type `{class}`"))?;
            Ok(Val::Storage {
                key: key.clone(),
                kind,
            })
        }
        _ => Err("persistent id is not a storage reference".into()),
    }
}

/// The tensors of a state dict, named; also finds one nested under a checkpoint's
/// `state_dict` / `model` / `model_state_dict` key.
fn state_dict(top: Val) -> std::result::Result<Vec<(String, TensorRef)>, String> {
    let items = match top {
        Val::Dict(items) => items,
        Val::Object(class) => {
            return Err(format!(
                "the file holds a pickled `{class}`, not a state dict: save model.state_dict()"
            ));
        }
        _ => return Err("the file holds no dict of tensors".into()),
    };
    let tensors: Vec<(String, TensorRef)> = items
        .iter()
        .filter_map(|(k, v)| match (k, v) {
            (Val::Str(k), Val::Tensor(t)) => Some((k.clone(), t.clone())),
            _ => None,
        })
        .collect();
    if !tensors.is_empty() {
        return Ok(tensors);
    }
    for key in ["state_dict", "model_state_dict", "model"] {
        if let Some((_, v)) = items
            .iter()
            .find(|(k, _)| matches!(k, Val::Str(s) if s == key))
        {
            return state_dict(v.clone());
        }
    }
    Err("the file's dict holds no tensors".into())
}

fn element_size(kind: Kind) -> usize {
    match kind {
        Kind::Double | Kind::Int64 => 8,
        Kind::Float | Kind::Int => 4,
        Kind::Half | Kind::BFloat16 | Kind::Int16 => 2,
        _ => 1,
    }
}

/// A view of `numel` elements of `bytes` (one storage) as the recorded tensor, made contiguous.
fn materialize(r: &TensorRef, bytes: &[u8]) -> std::result::Result<Tensor, String> {
    let es = element_size(r.kind);
    let numel = (bytes.len() / es) as i64;
    // The last element the view touches must lie inside the storage.
    let reach: i64 = r.offset
        + r.size
            .iter()
            .zip(&r.stride)
            .map(|(&s, &st)| if s == 0 { 0 } else { (s - 1) * st })
            .sum::<i64>();
    if r.size.contains(&0) {
        return Ok(Tensor::zeros(r.size.as_slice(), (r.kind, tch::Device::Cpu)));
    }
    if r.offset < 0 || reach >= numel || r.stride.iter().any(|&s| s < 0) {
        return Err(format!(
            "storage {} holds {numel} elements; the tensor {:?} at offset {} reaches beyond it",
            r.key, r.size, r.offset
        ));
    }
    let flat = Tensor::f_from_data_size(&bytes[..numel as usize * es], &[numel], r.kind)
        .map_err(|e| e.to_string())?;
    Ok(flat
        .as_strided(r.size.as_slice(), r.stride.as_slice(), Some(r.offset))
        .contiguous())
}

/// Reads every tensor of a `torch.save`d state dict (or checkpoint holding one).
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let fail = |m: String| Error::data(path, m);
    let io = |e| Error::io(path, e);
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(io)?;
    let n = file.read(&mut magic).map_err(io)?;
    // A zip archive is read entry by entry; only the legacy stream is read whole.
    let out = if n == 4 && magic == *b"PK\x03\x04" {
        read_zip(file)
    } else if n > 0 && magic[0] == 0x80 {
        read_legacy(&std::fs::read(path).map_err(io)?)
    } else {
        Err("not a PyTorch weight file (neither a zip archive nor a pickle)".into())
    };
    out.map_err(fail)
}

fn read_zip(file: std::fs::File) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("unreadable zip archive: {e}"))?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or("zip archive without `<name>/data.pkl`: not written by torch.save")?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut entry = |name: &str| -> std::result::Result<Vec<u8>, String> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| format!("archive entry `{name}`: {e}"))?;
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| format!("archive entry `{name}`: {e}"))?;
        Ok(buf)
    };
    if let Ok(order) = entry(&format!("{prefix}byteorder"))
        && order != b"little"
    {
        return Err(format!(
            "big-endian tensors (`{}byteorder`) are not supported",
            prefix
        ));
    }
    let top = Machine::new(&entry(&pkl)?).run()?;
    let refs = state_dict(top)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(refs.len());
    for (name, r) in refs {
        if !storages.contains_key(&r.key) {
            let bytes = entry(&format!("{prefix}data/{}", r.key))?;
            storages.insert(r.key.clone(), bytes);
        }
        let t = materialize(&r, &storages[&r.key]).map_err(|e| format!("tensor `{name}`: {e}"))?;
        out.push((name, t));
    }
    Ok(out)
}

/// The pre-1.6 format: magic, protocol, system info, the object, the storage keys, then each
/// storage as an 8-byte element count and its raw bytes, in key order.
fn read_legacy(raw: &[u8]) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let mut m = Machine::new(raw);
    let magic = LEGACY_MAGIC.to_le_bytes();
    if !matches!(m.run()?, Val::Bytes(b) if b == magic[..10]) {
        return Err("a pickle, but not a PyTorch weight file (no magic number)".into());
    }
    let next = |m: &mut Machine| {
        m.stack.clear();
        m.memo.clear();
        m.run()
    };
    next(&mut m)?; // protocol version
    next(&mut m)?; // system info
    let top = next(&mut m)?;
    let keys = match next(&mut m)? {
        Val::List(k) => k
            .into_iter()
            .map(|k| match k {
                Val::Str(s) => Ok(s),
                _ => Err("storage key is not a string".to_string()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        _ => return Err("legacy file lacks its list of storage keys".into()),
    };
    let refs = state_dict(top)?;
    let kinds: HashMap<&str, Kind> = refs.iter().map(|(_, r)| (r.key.as_str(), r.kind)).collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = m.pos;
    for key in keys {
        let kind = *kinds
            .get(key.as_str())
            .ok_or_else(|| format!("storage {key} is used by no tensor"))?;
        let count = raw
            .get(pos..pos + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or("legacy file truncated in its storages")?;
        let len = count * element_size(kind);
        let bytes = raw
            .get(pos + 8..pos + 8 + len)
            .ok_or("legacy file truncated in its storages")?;
        storages.insert(key, bytes);
        pos += 8 + len;
    }
    refs.into_iter()
        .map(|(name, r)| {
            let bytes = storages
                .get(&r.key)
                .ok_or_else(|| format!("tensor `{name}`: storage {} missing", r.key))?;
            let t = materialize(&r, bytes).map_err(|e| format!("tensor `{name}`: {e}"))?;
            Ok((name, t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-assembled protocol-2 pickle: {"w": tensor of storage "0", offset 1, size (2, 2),
    /// stride (1, 2)} — a transposed view.
    fn pickle_of_view() -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\n)R(");
        p.extend(b"X\x01\x00\x00\x00w");
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x05tQ");
        p.extend(b"K\x01K\x02K\x02\x86K\x01K\x02\x86\x89ccollections\nOrderedDict\n)RtR");
        p.extend(b"u}b.");
        p
    }

    #[test]
    fn views_keep_offset_and_strides() {
        let top = Machine::new(&pickle_of_view()).run().unwrap();
        let refs = state_dict(top).unwrap();
        assert_eq!(refs.len(), 1);
        let (name, r) = &refs[0];
        assert_eq!(name, "w");
        let bytes: Vec<u8> = [0f32, 1., 2., 3., 4.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = materialize(r, &bytes).unwrap();
        // Elements 1..5 read column-major: [[1, 3], [2, 4]].
        assert_eq!(
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
            vec![1., 3., 2., 4.]
        );
        // A view past the storage's end is an error, not a read out of bounds.
        assert!(materialize(r, &bytes[..16]).is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let p = pickle_of_view();
        for cut in [1, 5, 40, p.len() - 1] {
            assert!(Machine::new(&p[..cut]).run().is_err(), "cut at {cut}");
        }
        assert!(Machine::new(&[0x80, 2, 0xff]).run().is_err());
    }
}
