/* Blocking client of the admin socket, for mpctl and the tests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin.h"

static bool write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* Read one line (the reply); malloc'd, NULL on EOF or error. */
static char *read_line(int fd)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len + 1 == cap) {
			char *bigger = realloc(buf, cap *= 2);
			if (!bigger)
				break;
			buf = bigger;
		}
		ssize_t n = read(fd, buf + len, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (buf[len] == '\n') {
			buf[len] = '\0';
			return buf;
		}
		len++;
	}
	free(buf);
	return NULL;
}

static int connect_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "%s: socket path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		snprintf(err, errlen, "cannot connect to %s (is the daemon running?): %s", path,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static json_t *parse_reply(const char *line, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *reply = json_loads(line, 0, &jerr);
	if (!reply) {
		snprintf(err, errlen, "unparsable reply: %s", jerr.text);
		return NULL;
	}
	json_t *error = json_object_get(reply, "error");
	if (error) {
		snprintf(err, errlen, "error %lld: %s",
			 (long long)json_integer_value(json_object_get(error, "code")),
			 json_string_value(json_object_get(error, "message")) ?: "(no message)");
		json_decref(reply);
		return NULL;
	}
	json_t *result = json_incref(json_object_get(reply, "result"));
	json_decref(reply);
	if (!result)
		snprintf(err, errlen, "reply has neither result nor error");
	return result;
}

json_t *mp_admin_call(const char *path, const char *method, json_t *params, char *err,
		      size_t errlen)
{
	int fd = connect_unix(path, err, errlen);
	if (fd < 0)
		return NULL;
	json_t *req = params
			  ? json_pack("{s:i,s:s,s:O}", "id", 1, "method", method, "params", params)
			  : json_pack("{s:i,s:s,s:{}}", "id", 1, "method", method, "params");
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	json_t *result = NULL;
	if (!text) {
		snprintf(err, errlen, "cannot encode the request");
	} else if (!write_all(fd, text, strlen(text)) || !write_all(fd, "\n", 1)) {
		snprintf(err, errlen, "cannot send to %s: %s", path, strerror(errno));
	} else {
		char *line = read_line(fd);
		if (!line)
			snprintf(err, errlen, "%s closed the connection without a reply", path);
		else
			result = parse_reply(line, err, errlen);
		free(line);
	}
	free(text);
	close(fd);
	return result;
}
