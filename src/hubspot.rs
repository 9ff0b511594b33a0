//! Builds the HubSpot connector from the `[connector]` settings and the secrets.

use leadscore_hubspot::{HubSpotAuth, HubSpotConfig, HubSpotConnector};

use crate::config::{ConnectorSecrets, HubSpotAuthSettings, HubSpotSettings};
use crate::pipeline::PipelineError;

fn parse_url(key: &str, text: &str) -> Result<url::Url, PipelineError> {
    url::Url::parse(text).map_err(|err| {
        PipelineError::Model(format!("[connector] {key} {text:?} is not a URL: {err}"))
    })
}

/// Returns the connector for `settings`, or an error when the secrets are of another kind.
pub fn connect(
    settings: &HubSpotSettings,
    secrets: ConnectorSecrets,
    extra_ca_pem: Option<Vec<u8>>,
) -> Result<HubSpotConnector, PipelineError> {
    let base_url = parse_url("base_url", &settings.base_url)?;
    let auth =
        match (&settings.auth, secrets) {
            (HubSpotAuthSettings::PrivateApp { .. }, ConnectorSecrets::HubSpotToken(token)) => {
                HubSpotAuth::PrivateApp(token)
            }
            (
                HubSpotAuthSettings::OAuth {
                    token_url,
                    client_id,
                    ..
                },
                ConnectorSecrets::HubSpotOAuth(secrets),
            ) => HubSpotAuth::OAuth {
                token_url: parse_url("token_url", token_url)?,
                client_id: client_id.clone(),
                client_secret: secrets.client_secret,
                refresh_token: secrets.refresh_token,
            },
            _ => return Err(PipelineError::Model(
                "the secrets given do not fit the HubSpot authentication configured in [connector]"
                    .to_string(),
            )),
        };
    let mut config = HubSpotConfig::new(base_url, auth);
    config.timeout = settings.timeout;
    config.max_retries = settings.max_retries;
    config.lead_converted_stage = settings.lead_converted_stage.clone();
    config.extra_ca_pem = extra_ca_pem;
    config.allow_insecure_http = settings.transport.allow_insecure_http;
    let transport = &settings.transport;
    let connector = HubSpotConnector::new(config)?
        .with_api_budget(transport.api_budget_share, transport.daily_api_allowance);
    Ok(match &transport.refresh_token_file {
        Some(path) => connector.with_refresh_token_sink(crate::token_file::sink(path.clone())),
        None => connector,
    })
}
