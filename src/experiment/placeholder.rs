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
                        // A local server (llama.cpp, vLLM, Ollama) set up in the environment
                        // takes no key: leave it unset rather than force a dummy value.
                        None if field.eq_ignore_ascii_case("api_key") && key_optional(c, env) => {
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
        // The type the connection class implies, unless the environment names one (a local
        // Ollama behind the template's `OpenAIConnection` stays `ollama`).
        if !has_type && env.get(&format!("{prefix}_API_TYPE")).is_none() {
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

/// A property's value: the experiment's own (a placeholder read from `env`), else the
/// connection's variable `<PREFIX>_<PROPERTY>` in `env`; and whether it was the experiment's.
fn property_value(c: &ConnectionDef, env: &EnvVars, property: &str) -> Option<(String, bool)> {
    let own = c
        .properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(property))
        .map(|(_, (value, _))| value);
    match own {
        Some(value) => match placeholder_name(value) {
            None => Some((value.clone(), true)),
            Some(field) => placeholder_vars(&c.name, field)
                .iter()
                .find_map(|v| env.get(v))
                .map(|v| (v.to_string(), true)),
        },
        None => env
            .get(&format!("{}_{}", env_prefix(&c.name), env_prefix(property)))
            .map(|v| (v.to_string(), false)),
    }
    .filter(|(v, _)| !v.trim().is_empty())
}

/// Whether an unset `${api_key}` of connection `c` may leave the key unset: the connection is
/// `ollama`, or OpenAI-compatible with a base URL from the environment (a local server such as
/// llama.cpp or vLLM that the shipped experiment file knows nothing of), as the connection
/// itself allows. A base URL written in the experiment file comes with the key it asks for.
fn key_optional(c: &ConnectionDef, env: &EnvVars) -> bool {
    let api_type = property_value(c, env, "api_type").map(|(t, _)| t.to_ascii_lowercase());
    let kind = c.connection_type.to_ascii_lowercase();
    let openai_like = match api_type.as_deref() {
        Some("ollama") => return true,
        Some("openai") => true,
        Some(_) => false,
        None => kind.contains("openai") && !kind.contains("azure"),
    };
    openai_like && matches!(property_value(c, env, "api_base"), Some((_, false)))
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
    fn a_local_server_needs_no_key_for_the_api_key_placeholder() {
        let mut openai = conn("local", &[("api_key", "${api_key}")]);
        openai.connection_type = "OpenAIConnection".into();
        // With a base URL of its own (the environment's), the key may stay unset.
        let env = EnvVars::from_pairs([("LOCAL_API_BASE", "http://127.0.0.1:8080/v1")]);
        let r = resolve_connections(std::slice::from_ref(&openai), &env, false).unwrap();
        assert!(!r.vars.iter().any(|(k, _)| k == "LOCAL_API_KEY"), "{r:?}");
        // Without one, the key is the vendor's and still required.
        assert!(
            resolve_connections(std::slice::from_ref(&openai), &EnvVars::default(), false).is_err()
        );
        // Ollama never needs one; Azure always does, base or not.
        let env = EnvVars::from_pairs([("LOCAL_API_TYPE", "ollama")]);
        assert!(resolve_connections(std::slice::from_ref(&openai), &env, false).is_ok());
        let azure = conn(
            "local",
            &[("api_key", "${api_key}"), ("api_base", "https://x/")],
        );
        assert!(resolve_connections(&[azure], &EnvVars::default(), false).is_err());
        // Another placeholder is still required.
        let other = conn("local", &[("api_base", "${api_base}")]);
        assert!(resolve_connections(&[other], &EnvVars::default(), false).is_err());
    }

    #[test]
    fn only_a_whole_value_is_a_placeholder() {
        assert_eq!(placeholder_name("${api_key}"), Some("api_key"));
        assert_eq!(placeholder_name("x${api_key}"), None);
        assert_eq!(placeholder_name("${}"), None);
    }
}
