//! Reading typed fields out of a JSON object, with errors that name the field.
//!
//! serde's derived errors say "invalid type: integer, expected a string" without the field's
//! name; a client author needs the name, so fields are read by hand through this helper.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A JSON object being read, with the path of the object for nested error messages.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// The path of this object inside the message (`""` at the top, `candidates[2]` below).
    path: &'a str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>) -> Self {
        Fields { map, path: "" }
    }

    pub(crate) fn nested(map: &'a Map<String, Value>, path: &'a str) -> Self {
        Fields { map, path }
    }

    /// The full name of `key` for error messages.
    pub(crate) fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A present, non-null value. `null` counts as absent: several clients send it for "unset".
    fn value(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    pub(crate) fn string(&self, key: &str) -> Result<&'a str> {
        self.opt_string(key)?
            .ok_or_else(|| Error::MissingField(self.name(key)))
    }

    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(Error::invalid(self.name(key), "expected a string")),
        }
    }

    /// A string that must not be empty.
    pub(crate) fn non_empty(&self, key: &str) -> Result<&'a str> {
        let text = self.string(key)?;
        if text.is_empty() {
            return Err(Error::invalid(self.name(key), "must not be empty"));
        }
        Ok(text)
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(Error::invalid(self.name(key), "expected true or false")),
        }
    }

    pub(crate) fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.value(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|number| u32::try_from(number).ok())
                .map(Some)
                .ok_or_else(|| Error::invalid(self.name(key), "expected a non-negative integer")),
        }
    }

    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.value(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| Error::invalid(self.name(key), "expected a non-negative integer")),
        }
    }

    /// A non-negative number of seconds (a fraction allowed) as a duration.
    pub(crate) fn opt_seconds(&self, key: &str) -> Result<Option<std::time::Duration>> {
        match self.value(key) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds).ok())
                .map(Some)
                .ok_or_else(|| Error::invalid(self.name(key), "expected a number of seconds")),
        }
    }

    pub(crate) fn array(&self, key: &str) -> Result<&'a [Value]> {
        self.opt_array(key)?
            .ok_or_else(|| Error::MissingField(self.name(key)))
    }

    pub(crate) fn opt_array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(Error::invalid(self.name(key), "expected an array")),
        }
    }

    pub(crate) fn object(&self, key: &str) -> Result<&'a Map<String, Value>> {
        self.opt_object(key)?
            .ok_or_else(|| Error::MissingField(self.name(key)))
    }

    pub(crate) fn opt_object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(Error::invalid(self.name(key), "expected an object")),
        }
    }

    /// An optional array of strings.
    pub(crate) fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    Error::invalid(format!("{}[{index}]", self.name(key)), "expected a string")
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

/// Parses text into a JSON object.
pub(crate) fn object(text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text)? {
        Value::Object(map) => Ok(map),
        _ => Err(Error::NotAnObject),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let outer = map(json!({"a": 5, "b": null, "c": "", "d": [1], "e": -1}));
        let fields = Fields::new(&outer);
        assert_eq!(
            fields.string("a").unwrap_err().to_string(),
            "invalid field `a`: expected a string"
        );
        assert_eq!(
            fields.string("b").unwrap_err().to_string(),
            "missing field `b`"
        );
        assert_eq!(
            fields.string("zz").unwrap_err().to_string(),
            "missing field `zz`"
        );
        assert_eq!(
            fields.non_empty("c").unwrap_err().to_string(),
            "invalid field `c`: must not be empty"
        );
        assert_eq!(
            fields.opt_strings("d").unwrap_err().to_string(),
            "invalid field `d[0]`: expected a string"
        );
        assert_eq!(
            fields.opt_u32("e").unwrap_err().to_string(),
            "invalid field `e`: expected a non-negative integer"
        );
        assert_eq!(fields.opt_string("b").unwrap(), None);
        let nested = Fields::nested(&outer, "candidates[3]");
        assert_eq!(
            nested.string("x").unwrap_err().to_string(),
            "missing field `candidates[3].x`"
        );
    }

    #[test]
    fn only_objects_are_messages() {
        assert!(matches!(object("[1,2]"), Err(Error::NotAnObject)));
        assert!(matches!(object("{"), Err(Error::Json(_))));
        assert!(object(r#"{"a":1}"#).is_ok());
    }
}
