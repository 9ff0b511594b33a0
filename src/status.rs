//! `leadscore status`: the daemon's last runs, failures, model and budget, read from the store.
