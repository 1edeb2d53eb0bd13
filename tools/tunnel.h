/* tunnel.h: `keyhold tunnel client|server ...` (tunnel.c). */
#ifndef KH_TUNNEL_H
#define KH_TUNNEL_H

/* kh_cli_tunnel runs `keyhold tunnel` with the whole argv; returns the exit status. */
int kh_cli_tunnel(int argc, char **argv);

#endif /* KH_TUNNEL_H */
