//! Strict serde forms for configs: structs only as maps, never as sequences.
//!
//! serde's derived `Deserialize` of a struct accepts a map *and* a sequence of the field values
//! in declaration order, so `[{"task": "adding", …}, {…}, …]` would load as a `TrainConfig`,
//! positionally. Every rnnlab config refuses that, with `#[serde(deny_unknown_fields)]` beside
//! it, through one of two macros used with `#[serde(remote = "Self")]` (which turns the derived
//! impls into inherent functions that the macros wrap):
//!
//! - [`serde_map_only!`](crate::serde_map_only) for structs and internally tagged enums: the
//!   value must be a map. Each struct checks itself, so a config nested in another, or in an
//!   enum's variant, is checked wherever it appears (serde's buffered `Content` of a tagged enum
//!   included).
//! - [`serde_struct_variants_as_maps!`](crate::serde_struct_variants_as_maps) for externally
//!   tagged enums (`{"orthogonal": {"gain": 1.0}}`): a struct variant's fields must be a map.
//!
//! # Examples
//! ```
//! use serde::{Deserialize, Serialize};
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(remote = "Self", deny_unknown_fields)]
//! struct Conf {
//!     lr: f64,
//! }
//! rnnlab_core::serde_map_only!(Conf);
//!
//! let c: Conf = serde_json::from_str(r#"{"lr": 0.5}"#)?;
//! assert_eq!(c, Conf { lr: 0.5 });
//! assert!(serde_json::from_str::<Conf>("[0.5]").is_err());
//! assert!(serde_json::from_str::<Conf>(r#"{"lr": 0.5, "lf": 1}"#).is_err());
//! assert_eq!(serde_json::to_string(&c)?, r#"{"lr":0.5}"#);
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::de::{DeserializeSeed, Deserializer, EnumAccess, VariantAccess, Visitor};

/// Implements `Deserialize` (map form only) and `Serialize` for a non-generic type whose serde
/// derives carry `#[serde(remote = "Self")]`: the map is handed to the derived code, anything
/// else is refused with "invalid type: sequence, expected a map (JSON object) for `T`".
#[macro_export]
macro_rules! serde_map_only {
    ($t:ty) => {
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::core::result::Result<Self, D::Error> {
                struct MapOnly;
                impl<'de> ::serde::de::Visitor<'de> for MapOnly {
                    type Value = $t;
                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        f.write_str(concat!("a map (JSON object) for ", stringify!($t)))
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, map: A) -> ::core::result::Result<$t, A::Error> {
                        // the inherent function `#[serde(remote = "Self")]` derived
                        <$t>::deserialize(::serde::de::value::MapAccessDeserializer::new(map))
                    }
                }
                deserializer.deserialize_map(MapOnly)
            }
        }
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error> {
                <$t>::serialize(self, serializer)
            }
        }
    };
}

/// Implements `Deserialize` and `Serialize` for a non-generic, externally tagged enum whose
/// serde derives carry `#[serde(remote = "Self")]`: as derived, except that a struct
/// variant's fields must be a map (`{"v": {"a": 1}}`, never `{"v": [1]}`).
#[macro_export]
macro_rules! serde_struct_variants_as_maps {
    ($t:ty) => {
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::core::result::Result<Self, D::Error> {
                // the inherent function `#[serde(remote = "Self")]` derived
                <$t>::deserialize($crate::serde_strict::StructVariantsAsMaps(deserializer))
            }
        }
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error> {
                <$t>::serialize(self, serializer)
            }
        }
    };
}

/// A deserializer that behaves as the one it wraps, except that an enum's struct variant is
/// read from a map only (see [`serde_struct_variants_as_maps!`](crate::serde_struct_variants_as_maps)).
#[derive(Debug)]
pub struct StructVariantsAsMaps<D>(pub D);

macro_rules! forward {
    ($($m:ident),* $(,)?) => {
        $(fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$m(visitor)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for StructVariantsAsMaps<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, EnumVisitor(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

struct EnumVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for EnumVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.expecting(f)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Enum(data))
    }
}

struct Enum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, Variant(variant)))
    }
}

struct Variant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.0.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        // The variant's content read as a value that must be a map.
        self.0.newtype_variant_seed(MapSeed(visitor))
    }
}

struct MapSeed<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for MapSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        deserializer.deserialize_map(self.0)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
    enum Ext {
        Zeros,
        Constant { value: f64 },
        Boxed(Box<Ext>),
    }
    crate::serde_struct_variants_as_maps!(Ext);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(remote = "Self", deny_unknown_fields)]
    struct Inner {
        a: u32,
        #[serde(default)]
        init: Option<Ext>,
    }
    crate::serde_map_only!(Inner);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(remote = "Self", tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    enum Tagged {
        One(Inner),
        Two { b: u32 },
        Three,
    }
    crate::serde_map_only!(Tagged);

    fn parses<T: for<'de> Deserialize<'de>>(json: &str) -> bool {
        serde_json::from_str::<T>(json).is_ok()
            && serde_json::from_value::<T>(serde_json::from_str(json).unwrap()).is_ok()
    }

    #[test]
    fn maps_pass_sequences_and_unknown_fields_do_not() {
        assert!(parses::<Inner>(r#"{"a": 1}"#));
        assert!(parses::<Inner>(r#"{"a": 1, "init": {"constant": {"value": 2.0}}}"#));
        assert!(parses::<Inner>(r#"{"a": 1, "init": {"boxed": {"constant": {"value": 2.0}}}}"#));
        assert!(parses::<Inner>(r#"{"a": 1, "init": "zeros"}"#));
        assert!(!parses::<Inner>("[1]"));
        assert!(!parses::<Inner>(r#"{"a": 1, "b": 2}"#));
        assert!(!parses::<Inner>(r#"{"a": 1, "init": {"constant": [2.0]}}"#));
        assert!(!parses::<Inner>(r#"{"a": 1, "init": {"boxed": {"constant": [2.0]}}}"#));
        assert!(!parses::<Inner>(r#"{"a": 1, "init": {"constant": {"value": 2.0, "x": 1}}}"#));
        assert!(parses::<Tagged>(r#"{"kind": "one", "a": 1}"#));
        assert!(parses::<Tagged>(r#"{"kind": "two", "b": 1}"#));
        assert!(parses::<Tagged>(r#"{"kind": "three"}"#));
        assert!(!parses::<Tagged>(r#"["one", 1]"#));
        assert!(!parses::<Tagged>(r#"["two", 1]"#));
        assert!(!parses::<Tagged>(r#"["three"]"#));
        assert!(!parses::<Tagged>(r#"{"kind": "two", "b": 1, "c": 2}"#));
        assert!(!parses::<Tagged>(r#"{"kind": "one", "a": 1, "c": 2}"#));
        // nested inside the buffered content of a tagged enum
        assert!(parses::<Tagged>(r#"{"kind": "one", "a": 1, "init": {"constant": {"value": 1.0}}}"#));
        assert!(!parses::<Tagged>(r#"{"kind": "one", "a": 1, "init": {"constant": [1.0]}}"#));
        let json =
            serde_json::to_string(&Tagged::One(Inner { a: 3, init: Some(Ext::Constant { value: 0.5 }) })).unwrap();
        assert_eq!(json, r#"{"kind":"one","a":3,"init":{"constant":{"value":0.5}}}"#);
        assert!(parses::<Tagged>(&json));
    }

    #[test]
    fn the_error_says_what_was_expected() {
        let e = serde_json::from_str::<Inner>("[1]").unwrap_err().to_string();
        assert!(e.contains("expected a map (JSON object) for Inner"), "{e}");
    }
}
