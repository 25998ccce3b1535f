<?php
// whoami.php - PHP page for the handoff server tests: echoes the client address and port the web server saw.
header('Content-Type: text/plain');
printf("client=%s:%s pid=%d sapi=%s\n", $_SERVER['REMOTE_ADDR'], $_SERVER['REMOTE_PORT'], getmypid(), PHP_SAPI);
