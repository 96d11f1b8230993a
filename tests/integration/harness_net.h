/* Helpers for tests of the network limits: raw TCP, a TLS client with a small receive buffer
 * that can flood a daemon without reading, hand-built frames, closes observed with a deadline,
 * a daemon's metrics, memory and log. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/* A plain TCP connection to host:port (blocking); the test fails if it cannot connect. */
int tcp_open(const char *endpoint);
/* The peer closes fd within ms: read returns 0 or an error (data read meanwhile is dropped). */
bool tcp_closed_within(int fd, int ms);

/* wire_connect with the socket's receive buffer set to rcvbuf bytes first (0: the default). */
bool wire_open(struct wire *w, const char *endpoint, const char *ca, const char *cert,
	       const char *key, int rcvbuf);
/* All of data, however many TLS writes it takes (blocking). */
bool wire_write_all(struct wire *w, const void *data, size_t len);
/* be32(len) || body, written whole (blocking). */
bool wire_send_frame(struct wire *w, const uint8_t *body, size_t len);
/* Pack env as it is (version and request_id untouched) and send it as one frame. */
bool wire_send_env(struct wire *w, const MpEnvelope *env);
/* env as one frame (be32 length, Envelope of this version and request_id) in frame[cap];
 * its length, 0 when it does not fit. */
size_t env_frame(MpEnvelope *env, uint64_t request_id, uint8_t *frame, size_t cap);
/* Several envelopes in one TLS write (pipelined): version 1, request_ids first_id, +1, ... */
bool wire_send_pipelined(struct wire *w, MpEnvelope *const *envs, size_t n, uint64_t first_id);
/* An IssueReq envelope (calloc'd; free it, not its parts) carrying ch's request, req its body. */
MpEnvelope *issue_envelope(const struct tchannel *ch, Micropay__V1__IssueReq *req);
/* Two signed statements encode to the same bytes. */
bool stmt_same_bytes(const MpSigned *a, const MpSigned *b);
/* Read one frame and decode it; NULL on EOF, error or after ms. */
MpEnvelope *wire_recv_within(struct wire *w, int ms);
/* The server closes within ms (answers still arriving are read and dropped). */
bool wire_closed_within(struct wire *w, int ms);
/* Write frame (a whole frame) over and over without reading, until writes make no progress
 * for stall_ms. Returns the bytes written. */
size_t wire_flood(struct wire *w, const uint8_t *frame, size_t len, int stall_ms);

/* A frame of the given length: be32(len) and len bytes of an Envelope whose OpenReq holder_hint
 * fills it (len >= 16). malloc'd. */
uint8_t *big_envelope_frame(size_t len);

/* The value of one metric line of DAEMON's `metrics` (name with labels, exactly as printed);
 * -1 if the daemon does not print it. */
int64_t metric(const struct net *n, const char *daemon, const char *name);
/* Poll until metric(name) >= value or ms pass; returns the last value read. */
int64_t metric_wait(const struct net *n, const char *daemon, const char *name, int64_t value,
		    int ms);
/* Kilobytes of /proc/PID/status field (VmRSS, VmHWM) of DAEMON (its pid is in DIR/DAEMON/pid). */
int64_t daemon_mem_kb(const struct net *n, const char *daemon, const char *field);
/* Reset DAEMON's peak RSS (VmHWM) to its current RSS (/proc/PID/clear_refs, value 5); false if
 * the kernel refused. */
bool daemon_peak_reset(const struct net *n, const char *daemon);
/* Lines of DAEMON's log containing needle (0 if there is no log). */
int log_lines_with(const struct net *n, const char *daemon, const char *needle);
/* DAEMON's log has a line containing needle (within ms, polling). */
bool log_has(const struct net *n, const char *daemon, const char *needle, int ms);

/* RegisterAccount for a fresh key; returns the status code, detail copied out. */
MpCode register_fresh_account(struct wire *broker, char *detail, size_t len);
/* A fresh connection's request is answered by the daemon at endpoint. */
bool honest_request_answered(const char *endpoint, const char *ca);
