/* Joins two byte streams (the two halves of a qube-to-qube data stream, each in its own
 * qube's vchan dir) without parsing a byte: splice() moves pages between the sockets, and
 * an EOF on one side is passed on as a half-close of the other. */
#pragma once
int bh_relay(int a, int b);
