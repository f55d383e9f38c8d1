//! `[destinations]` of the configuration file: the countries each channel may reach for every
//! key, the number types refused, the blocked prefixes and the map of prefixes to networks
//! (docs/configuration.md, "Destinations").

use serde::Deserialize;

use super::file::Problem;
use crate::domain::destinations::{Countries, Destinations, Network, COUNTRY_SETTINGS};
use crate::domain::numbering::NumberType;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationsFile {
    sms_countries: Option<Vec<String>>,
    voice_countries: Option<Vec<String>>,
    whatsapp_countries: Option<Vec<String>>,
    refused_number_types: Option<Vec<String>>,
    blocked_prefixes: Option<Vec<String>>,
    networks: Option<Vec<NetworkFile>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    prefix: String,
    network: String,
    name: Option<String>,
}

/// Leading digits of numbers, country code included.
fn prefix(key: &str, text: &str) -> Result<String, Problem> {
    let digits = text.trim().trim_start_matches('+');
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::new(
            key,
            format!("expected the leading digits of numbers with their country code, such as \"4490\", not {text:?}"),
        ));
    }
    Ok(digits.to_owned())
}

impl DestinationsFile {
    pub fn destinations(&self) -> Result<Destinations, Problem> {
        let mut d = Destinations::default();
        let lists = [
            &self.sms_countries,
            &self.voice_countries,
            &self.whatsapp_countries,
        ];
        for (slot, ((_, name), list)) in COUNTRY_SETTINGS.iter().zip(lists).enumerate() {
            if let Some(list) = list {
                d.countries[slot] = Countries::from_list(list.iter().map(String::as_str))
                    .map_err(|e| Problem::new(format!("destinations.{name}"), e))?;
            }
        }
        if let Some(types) = &self.refused_number_types {
            d.refused_types = types
                .iter()
                .map(|t| {
                    NumberType::from_name(t).ok_or_else(|| {
                        let names: Vec<&str> = NumberType::ALL.iter().map(|t| t.name()).collect();
                        Problem::new(
                            "destinations.refused_number_types",
                            format!("{t:?} is not a number type (one of {})", names.join(", ")),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        for p in self.blocked_prefixes.iter().flatten() {
            d.blocked_prefixes
                .push(prefix("destinations.blocked_prefixes", p)?);
        }
        for (i, n) in self.networks.iter().flatten().enumerate() {
            let key = format!("destinations.networks[{i}]");
            let id = n.network.trim();
            if !(5..=6).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Problem::new(
                    format!("{key}.network"),
                    format!(
                        "expected an MCC-MNC of five or six digits, such as \"23410\", not {id:?}"
                    ),
                ));
            }
            d.networks.push(Network {
                prefix: prefix(&format!("{key}.prefix"), &n.prefix)?,
                id: id.to_owned(),
                name: n.name.clone().unwrap_or_default(),
            });
        }
        Ok(d)
    }
}

/// The rules as the file writes them, for `config check`.
pub fn to_toml(d: &Destinations) -> toml::Table {
    let mut table = toml::Table::new();
    for ((_, name), countries) in COUNTRY_SETTINGS.iter().zip(&d.countries) {
        if let Countries::Only(list) = countries {
            table.insert((*name).into(), list.clone().into());
        }
    }
    let types: Vec<&str> = d.refused_types.iter().map(|t| t.name()).collect();
    table.insert("refused_number_types".into(), types.into());
    table.insert("blocked_prefixes".into(), d.blocked_prefixes.clone().into());
    let networks: Vec<toml::Value> = d
        .networks
        .iter()
        .map(|n| {
            let mut t = toml::Table::new();
            t.insert("prefix".into(), n.prefix.clone().into());
            t.insert("network".into(), n.id.clone().into());
            t.insert("name".into(), n.name.clone().into());
            toml::Value::Table(t)
        })
        .collect();
    table.insert("networks".into(), networks.into());
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::ConfigFile;

    fn parse(text: &str) -> Result<Destinations, String> {
        ConfigFile::parse(std::path::Path::new("v.toml"), text, |_| None)
            .map(|f| f.destinations)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn destinations_are_read_and_written_back_the_same() {
        let text = "[destinations]\nsms_countries = [\"GB\", \"ie\"]\nvoice_countries = []\n\
                    refused_number_types = [\"premium_rate\", \"voip\"]\n\
                    blocked_prefixes = [\"+4490\"]\n\
                    [[destinations.networks]]\nprefix = \"447700\"\nnetwork = \"23410\"\nname = \"O2 UK\"\n";
        let d = parse(text).unwrap();
        assert_eq!(
            d.countries[0],
            Countries::Only(vec!["GB".into(), "IE".into()])
        );
        assert_eq!(d.countries[1], Countries::Only(vec![]));
        assert_eq!(d.countries[2], Countries::All);
        assert_eq!(d.refused_types, [NumberType::PremiumRate, NumberType::Voip]);
        assert_eq!(d.blocked_prefixes, ["4490"]);
        assert_eq!(d.networks[0].id, "23410");
        let mut file = toml::Table::new();
        file.insert("destinations".into(), to_toml(&d).into());
        assert_eq!(parse(&toml::to_string(&file).unwrap()).unwrap(), d);
        assert_eq!(parse("").unwrap(), Destinations::default());
    }

    #[test]
    fn a_wrong_destination_rule_is_refused_with_its_key() {
        assert_eq!(
            parse("[destinations]\nsms_countries = [\"UK\"]\n").unwrap_err(),
            "v.toml: destinations.sms_countries: \"UK\" is not a country code (ISO 3166, such as GB)"
        );
        assert!(
            parse("[destinations]\nrefused_number_types = [\"premium\"]\n")
                .unwrap_err()
                .starts_with(
                    "v.toml: destinations.refused_number_types: \"premium\" is not a number type"
                )
        );
        assert!(parse("[destinations]\nblocked_prefixes = [\"44 90\"]\n")
            .unwrap_err()
            .starts_with("v.toml: destinations.blocked_prefixes: expected the leading digits"));
        assert!(
            parse("[[destinations.networks]]\nprefix = \"4477\"\nnetwork = \"O2\"\n")
                .unwrap_err()
                .starts_with("v.toml: destinations.networks[0].network: expected an MCC-MNC")
        );
    }
}
