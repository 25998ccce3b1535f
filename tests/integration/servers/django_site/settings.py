# settings.py - settings of the minimal Django project served by gunicorn in the handoff server tests.
import os

SECRET_KEY = "handoff-tests-only-not-secret"
DEBUG = False
# The test reaches the site as its own test name through the daemon.
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_site.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
# Where the big download lives; set by the test.
SITE_DOCROOT = os.environ.get("SITE_DOCROOT", "/nonexistent")
