//! [`ConnectorBuilder`]: a [`Connector`] with everything it is given at build: the observer,
//! the password provider, and for the bulk bind its lag routing.

use std::sync::Arc;

use notify_db_config::{DatabaseUri, Settings};

use crate::connector::Connector;
use crate::error::ConnectError;
use crate::observer::{Bind, PoolObserver};
use crate::password::{PasswordProvider, PasswordSource};
use crate::pooler;
use crate::sampler;

/// Builds a [`Connector`] for one bind (see [`Connector::builder`]).
#[must_use]
pub struct ConnectorBuilder<'a> {
    uri: &'a DatabaseUri,
    settings: &'a Settings,
    bind: Bind,
    observer: Option<Arc<dyn PoolObserver>>,
    password: Option<Arc<dyn PasswordProvider>>,
    lag_routing: bool,
}

impl Connector {
    /// A builder for `bind`'s connector to `uri`: [`Connector::new`] plus a password provider
    /// and lag routing.
    pub fn builder<'a>(
        uri: &'a DatabaseUri,
        settings: &'a Settings,
        bind: Bind,
    ) -> ConnectorBuilder<'a> {
        ConnectorBuilder {
            uri,
            settings,
            bind,
            observer: None,
            password: None,
            lag_routing: false,
        }
    }
}

impl ConnectorBuilder<'_> {
    /// Tells `observer` of every connect failure (and, with lag routing, of replica lag and the
    /// bulk fallback).
    pub fn observer(mut self, observer: Option<Arc<dyn PoolObserver>>) -> Self {
        self.observer = observer;
        self
    }

    /// Logs in with the password `provider` gives for every new connection (over a password
    /// file or the URI's password); `None` keeps those.
    pub fn password_provider(mut self, provider: Option<Arc<dyn PasswordProvider>>) -> Self {
        self.password = provider;
        self
    }

    /// With `on` and the bulk bind: routes new connections by replica lag when the settings ask
    /// for it (`pool.max_replica_lag` above 0 and a bulk URI of its own with several hosts),
    /// falling back to the primary while every replica lags. The sampler starts here (within a
    /// tokio runtime) and stops when the connector, and every connection opened through it, is
    /// gone.
    pub fn lag_routing(mut self, on: bool) -> Self {
        self.lag_routing = on;
        self
    }

    /// The connector: per-host configs, TLS, setup SQL, and the lag routing asked for.
    pub fn build(self) -> Result<Connector, ConnectError> {
        let ConnectorBuilder {
            uri,
            settings,
            bind,
            observer,
            password,
            lag_routing,
        } = self;
        let mut connector = Connector::with_pooler(
            uri,
            settings,
            bind,
            observer.clone(),
            pooler::is_pooled(settings, bind),
        )?;
        if let Some(provider) = password {
            connector.password = PasswordSource::Provider(provider);
        }
        if !(lag_routing && bind == Bind::Bulk) {
            return Ok(connector);
        }
        let Some(routing) =
            sampler::start_routing(settings, observer.clone(), &connector.password)?
        else {
            return Ok(connector);
        };
        let mut fallback = Connector::with_pooler(
            &settings.primary,
            settings,
            Bind::Bulk,
            observer,
            settings.pooler.default,
        )?;
        fallback.password = connector.password.clone();
        connector.lag = Some(routing);
        connector.fallback = Some(Box::new(fallback));
        Ok(connector)
    }
}
