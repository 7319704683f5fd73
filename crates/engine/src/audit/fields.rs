//! A job's JSON one top-level field at a time: a serializer that takes
//! only a struct and hands each field's name and JSON text to a callback,
//! so a create's diff is written from the job without rendering the whole
//! job first and parsing it back, and the fields the diff leaves out
//! (run counters) are never rendered at all.
//!
//! Owns: [`for_each_field`]. Must not: know which fields a diff keeps.

use serde::Serialize;
use serde::ser::{Error as _, Impossible, SerializeStruct, Serializer};

/// Calls `keep(name)` for each top-level field of `value` (a struct),
/// and for the kept ones `each(name, json_text)`, in order.
pub(crate) fn for_each_field<T: Serialize>(
    value: &T,
    keep: impl FnMut(&str) -> bool,
    each: impl FnMut(&'static str, &str),
) -> Result<(), serde_json::Error> {
    value.serialize(Fields {
        keep,
        each,
        scratch: Vec::with_capacity(256),
    })
}

struct Fields<K, E> {
    keep: K,
    each: E,
    scratch: Vec<u8>,
}

type Error = serde_json::Error;

fn only_structs<T>() -> Result<T, Error> {
    Err(Error::custom("only a struct's fields can be listed"))
}

impl<K: FnMut(&str) -> bool, E: FnMut(&'static str, &str)> SerializeStruct for Fields<K, E> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if !(self.keep)(key) {
            return Ok(());
        }
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, value)?;
        let text = std::str::from_utf8(&self.scratch).map_err(Error::custom)?;
        (self.each)(key, text);
        Ok(())
    }

    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<K: FnMut(&str) -> bool, E: FnMut(&'static str, &str)> Serializer for Fields<K, E> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }

    fn serialize_bool(self, _: bool) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_i8(self, _: i8) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_i16(self, _: i16) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_i32(self, _: i32) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_i64(self, _: i64) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_u8(self, _: u8) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_u16(self, _: u16) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_u32(self, _: u32) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_u64(self, _: u64) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_f32(self, _: f32) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_f64(self, _: f64) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_char(self, _: char) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_str(self, _: &str) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_none(self) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_unit(self) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        only_structs()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        only_structs()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        only_structs()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        only_structs()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        only_structs()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        only_structs()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        only_structs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct S {
        a: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<u32>,
        c: Vec<&'static str>,
        d: String,
    }

    #[test]
    fn each_kept_field_comes_as_its_json_in_order() {
        let s = S {
            a: 1,
            b: None,
            c: vec!["x", "y"],
            d: "q\"✓".into(),
        };
        let mut got = Vec::new();
        for_each_field(&s, |k| k != "a", |k, v| got.push(format!("{k}={v}"))).expect("struct");
        assert_eq!(got, ["c=[\"x\",\"y\"]", "d=\"q\\\"✓\""]);
        assert!(for_each_field(&3u8, |_| true, |_, _| {}).is_err());
    }
}
