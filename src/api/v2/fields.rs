//! Reading a JSON body field by field: what is wrong is collected, so that one 422 lists every
//! wrong field.

use serde_json::{Map, Value};

use super::error::{InvalidParameter, V2Error};

/// The body as a JSON object.
pub(super) fn object(body: &[u8]) -> Result<Map<String, Value>, V2Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(V2Error::InvalidParams(vec![InvalidParameter::new(
            "body",
            "must be a JSON object",
        )])),
    }
}

/// The fields of one body, read one by one; what is wrong is collected, not returned at once.
pub(super) struct Fields<'a, 'e> {
    pub(super) map: &'a Map<String, Value>,
    pub(super) prefix: String,
    pub(super) invalid: &'e mut Vec<InvalidParameter>,
}

impl<'a> Fields<'a, '_> {
    pub(super) fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    pub(super) fn refuse(&mut self, field: &str, reason: impl Into<String>) {
        let name = self.name(field);
        self.invalid.push(InvalidParameter::new(name, reason));
    }

    pub(super) fn string(&mut self, field: &str) -> Option<&'a str> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.refuse(field, "must be a string");
                None
            }
        }
    }

    /// A string that must be there: missing and `null` are refused alike.
    pub(super) fn required(&mut self, field: &str, what: &str) -> Option<&'a str> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                self.refuse(field, format!("{what} is required"));
                None
            }
            Some(_) => self.string(field),
        }
    }

    pub(super) fn integer(&mut self, field: &str) -> Option<i64> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(_) => {
                self.refuse(field, "must be an integer");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.refuse(field, "must be true or false");
                None
            }
        }
    }

    /// A string that must pass `valid`, else refused with `reason`.
    pub(super) fn checked(
        &mut self,
        field: &str,
        valid: impl Fn(&str) -> bool,
        reason: &str,
    ) -> Option<&'a str> {
        let value = self.string(field)?;
        if valid(value) {
            Some(value)
        } else {
            self.refuse(field, reason);
            None
        }
    }
}
