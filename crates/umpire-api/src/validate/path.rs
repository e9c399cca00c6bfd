//! Field paths as users read them: `spec.judges[0].llm.timeout`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        Self::default()
    }

    /// From a dotted path as CEL reports it (`spec.alerts`, `.metadata.name`).
    pub fn parse(text: &str) -> Self {
        Self(text.trim_start_matches('.').to_owned())
    }

    /// From a JSON pointer (`/spec/judges/0/name`); numeric segments become indices.
    pub fn from_pointer(pointer: &str) -> Self {
        let mut path = Self::root();
        for segment in pointer.split('/').skip(1) {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            path = match segment.parse::<usize>() {
                Ok(index) => path.index(index),
                Err(_) => path.field(&segment),
            };
        }
        path
    }

    pub fn field(&self, name: &str) -> Self {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match (self.0.is_empty(), plain) {
            (true, true) => Self(name.to_owned()),
            (false, true) => Self(format!("{}.{name}", self.0)),
            // Map keys such as `attributes.gen_ai.request.model` keep their dots unambiguous.
            (_, false) => Self(format!("{}[{name:?}]", self.0)),
        }
    }

    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(root)")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_readable_paths() {
        assert_eq!(
            FieldPath::from_pointer("/spec/judges/0/llm/timeout").as_str(),
            "spec.judges[0].llm.timeout"
        );
        assert_eq!(
            FieldPath::root()
                .field("spec")
                .field("variables")
                .field("a.b")
                .as_str(),
            "spec.variables[\"a.b\"]"
        );
        assert_eq!(FieldPath::root().to_string(), "(root)");
    }
}
