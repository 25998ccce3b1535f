# views.py - views of the minimal Django project: the client address the WSGI server saw, and a file download.
import os

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse


def whoami(request):
	# REMOTE_ADDR and REMOTE_PORT are gunicorn's getpeername() of the
	# connection: the client's own, with no forwarding header involved.
	meta = request.META
	body = f"client={meta.get('REMOTE_ADDR')}:{meta.get('REMOTE_PORT')} pid={os.getpid()}\n"
	return HttpResponse(body, content_type="text/plain")


def send_file(request, name):
	file_path = os.path.join(settings.SITE_DOCROOT, os.path.basename(name))
	if not os.path.isfile(file_path):
		raise Http404(name)
	return FileResponse(open(file_path, "rb"), content_type="application/octet-stream")
