"""The ingest wing: everything that receives (crash uploads, Sentry envelopes, sessions, symbol
uploads). Its routes are in server/ingest/routes.py; this file imports nothing, so that
``import server.ingest.ratelimit`` (server/state.py) does not pull in the whole wing."""
