//! Connection values of an experiment file. As the GenAIOps template does
//! (`create_connections._get_valid_connection_values`), a value written `${field}` is read from
//! the environment variable `<CONNECTION NAME>_<FIELD>` upper-cased (`aoai` + `${api_key}` →
//! `AOAI_API_KEY`); a literal value is used as written. Each property then becomes the variable
//! flow reads the connection from (`<PREFIX>_<PROPERTY>`), so flows run with the
//! experiment's connections.

use crate::connection::{EnvVars, env_prefix};
use crate::diagnostic::Diagnostic;

use super::file::ConnectionDef;

/// `${name}` → `Some("name")`: the whole value must be the placeholder, as in the template.
pub fn placeholder_name(value: &str) -> Option<&str> {
    let inner = value.trim().strip_prefix("${")?.strip_suffix('}')?;
    (!inner.is_empty()).then_some(inner)
}

/// The variables that hold `${field}` of connection `connection`: the template's spelling
/// (`<connection>_<field>` upper-cased) first, then flow's (non-alphanumerics as `_`).
pub fn placeholder_vars(connection: &str, field: &str) -> Vec<String> {
    let template = format!("{connection}_{field}").to_uppercase();
    let flow = format!("{}_{}", env_prefix(connection), env_prefix(field));
    if flow == template {
        vec![template]
    } else {
        vec![template, flow]
    }
}

/// What an experiment's connections add to the environment.
#[derive(Debug, Default)]
pub struct ResolvedConnections {
    /// Variable → value, to lay over the environment for the experiment's runs.
    pub vars: Vec<(String, String)>,
    /// Placeholders left unresolved because no request is made (offline, replay).
    pub skipped: Vec<String>,
}

/// Resolve every connection's properties against `env`. A placeholder whose variable is unset
/// is an error located at the value, unless `lenient` (offline or replay: no request needs it).
pub fn resolve_connections(
    connections: &[ConnectionDef],
    env: &EnvVars,
    lenient: bool,
) -> Result<ResolvedConnections, Vec<Diagnostic>> {
    let mut out = ResolvedConnections::default();
    let mut diagnostics = Vec::new();
    for c in connections {
        let prefix = env_prefix(&c.name);
        let mut has_type = false;
        for (property, (value, origin)) in &c.properties {
            let resolved = match placeholder_name(value) {
                None => Some(value.clone()),
                Some(field) => {
                    let vars = placeholder_vars(&c.name, field);
                    match vars.iter().find_map(|v| env.get(v)) {
                        Some(v) => Some(v.to_string()),
                        None if lenient => {
                            out.skipped.push(vars[0].clone());
                            None
                        }
                        None => {
                            diagnostics.push(
                                origin
                                    .error(format!(
                                        "connection `{}`: {value} needs the environment variable {}, which is not set",
                                        c.name, vars[0]
                                    ))
                                    .with_label("placeholder not resolved")
                                    .with_help(format!(
                                        "set {} in {} or the environment (or run with --offline)",
                                        vars[0],
                                        env.file_text()
                                    )),
                            );
                            None
                        }
                    }
                }
            };
            if let Some(v) = resolved {
                let var = format!("{prefix}_{}", env_prefix(property));
                has_type |= property.eq_ignore_ascii_case("api_type");
                out.vars.push((var, v));
            }
        }
        if !has_type {
            let kind = c.connection_type.to_ascii_lowercase();
            let api_type = if kind.contains("azure") {
                Some("azure")
            } else if kind.contains("openai") {
                Some("openai")
            } else if kind.contains("anthropic") {
                Some("anthropic")
            } else {
                None
            };
            if let Some(t) = api_type {
                out.vars.push((format!("{prefix}_API_TYPE"), t.to_string()));
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(out)
    } else {
        Err(diagnostics)
    }
}

/// `env` with the resolved connection variables laid over it.
pub fn apply_to_env(env: &EnvVars, resolved: &ResolvedConnections) -> EnvVars {
    let mut env = env.clone();
    for (k, v) in &resolved.vars {
        env = env.with(k, v);
    }
    env
}

#[cfg(test)]
mod tests {
    use super::super::doc::Origin;
    use super::*;
    use indexmap::IndexMap;

    fn conn(name: &str, props: &[(&str, &str)]) -> ConnectionDef {
        let origin = Origin {
            file: "experiment.yaml".into(),
            path: "connections[0]".into(),
            location: None,
        };
        ConnectionDef {
            name: name.into(),
            connection_type: "AzureOpenAIConnection".into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), (v.to_string(), origin.clone())))
                .collect::<IndexMap<_, _>>(),
            origin,
        }
    }

    #[test]
    fn placeholders_read_connection_field_variables_upper_cased() {
        let env = EnvVars::from_pairs([("AOAI_API_KEY", "sk-1")]);
        let r = resolve_connections(
            &[conn(
                "aoai",
                &[("api_key", "${api_key}"), ("api_base", "https://x/")],
            )],
            &env,
            false,
        )
        .unwrap();
        assert!(r.vars.contains(&("AOAI_API_KEY".into(), "sk-1".into())));
        assert!(
            r.vars
                .contains(&("AOAI_API_BASE".into(), "https://x/".into()))
        );
        assert!(r.vars.contains(&("AOAI_API_TYPE".into(), "azure".into())));
    }

    #[test]
    fn a_missing_variable_names_the_variable_to_set() {
        let err = resolve_connections(
            &[conn("my-conn", &[("api_key", "${api_key}")])],
            &EnvVars::default(),
            false,
        )
        .unwrap_err();
        assert!(
            err[0].message.contains("MY-CONN_API_KEY"),
            "{}",
            err[0].message
        );
        let ok = resolve_connections(
            &[conn("my-conn", &[("api_key", "${api_key}")])],
            &EnvVars::from_pairs([("MY_CONN_API_KEY", "k")]),
            false,
        )
        .unwrap();
        assert!(ok.vars.contains(&("MY_CONN_API_KEY".into(), "k".into())));
        let lenient = resolve_connections(
            &[conn("c", &[("api_key", "${api_key}")])],
            &EnvVars::default(),
            true,
        )
        .unwrap();
        assert_eq!(lenient.skipped, vec!["C_API_KEY".to_string()]);
    }

    #[test]
    fn only_a_whole_value_is_a_placeholder() {
        assert_eq!(placeholder_name("${api_key}"), Some("api_key"));
        assert_eq!(placeholder_name("x${api_key}"), None);
        assert_eq!(placeholder_name("${}"), None);
    }
}
