//! What a project `pyproject.toml` holds for us, deserialised without building the rest: `[project]`,
//! `[tool.ruff]` and the like are skipped by serde's `IgnoredAny` instead of becoming `toml::Value` trees that are
//! built and dropped on every `token` (most of the cached path's work, BENCHMARKS.md "Where a cached `token` spends
//! its time"). The TOML is still parsed whole, so syntax errors and duplicate keys anywhere are still reported.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::TOOL_TABLE;

/// A document reduced to `{tool = {mlflow-oidc-client = …}}`; `tool` keeps its type when it is not a table,
/// so the messages about a malformed `tool` stay the same.
pub(super) fn project_view(text: &str) -> Result<toml::Table, toml::de::Error> {
    toml::from_str::<Top>(text).map(|t| t.0)
}

struct Top(toml::Table);

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a TOML document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
                let mut out = toml::Table::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "tool" {
                        out.insert(key, map.next_value::<Tool>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Top(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `tool`: only our entry when it is a table, else a stand-in of the same type.
struct Tool(toml::Value);

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tool;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tool, A::Error> {
                let mut out = toml::Table::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == TOOL_TABLE {
                        out.insert(key, map.next_value::<toml::Value>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Tool(toml::Value::Table(out)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tool, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Tool(toml::Value::Array(Vec::new())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tool, E> {
                Ok(Tool(toml::Value::Boolean(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tool, E> {
                Ok(Tool(toml::Value::Integer(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tool, E> {
                Ok(Tool(toml::Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tool, E> {
                Ok(Tool(toml::Value::Float(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tool, E> {
                Ok(Tool(toml::Value::String(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_table_is_kept_and_the_rest_still_parsed() {
        let text = "[project]\nname = \"x\"\ndeps = [\"a\", \"b\"]\n[tool.ruff]\nline-length = 100\n\
                    [[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"https://m\"\n";
        let view = project_view(text).unwrap();
        let full: toml::Table = text.parse().unwrap();
        assert_eq!(view["tool"][TOOL_TABLE], full["tool"][TOOL_TABLE]);
        assert!(view.get("project").is_none() && view["tool"].get("ruff").is_none());
        assert!(project_view("[project]\nname = \"x\"\nname = \"y\"\n").is_err(), "a duplicate key elsewhere");
        assert!(project_view("[project\n").is_err(), "a syntax error elsewhere");
        assert_eq!(project_view("tool = 5\n").unwrap()["tool"], toml::Value::Integer(5));
    }
}
