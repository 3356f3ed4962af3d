"""Remediation: a planner that proposes (never acts), a Redis store for plans and the audit
trail, and an executor that carries out an approved plan exactly once."""
