# urls.py - routes of the minimal Django project: /whoami echoes the client's address, /files/NAME sends a file.
from django.urls import path

from . import views

urlpatterns = [
	path("whoami", views.whoami),
	path("files/<str:name>", views.send_file),
]
