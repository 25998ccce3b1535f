# django_site - a minimal Django project for the handoff server tests (no apps, no database).
