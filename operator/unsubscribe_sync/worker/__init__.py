"""The push worker: webhook API over the ledger, and the real-time push into Salesforce."""
