/* channel_cmd.h: `keyhold channel ...` (channel_cmd.c). */
#ifndef KH_CHANNEL_CMD_H
#define KH_CHANNEL_CMD_H

/* kh_cli_channel runs `keyhold channel` with the whole argv; returns the exit status. */
int kh_cli_channel(int argc, char **argv);

#endif /* KH_CHANNEL_CMD_H */
