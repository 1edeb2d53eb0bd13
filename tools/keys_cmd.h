/* keys_cmd.h: `keyhold pubkey|seal|open`: sealed messages (docs/KEYS.md). */
#ifndef KH_KEYS_CMD_H
#define KH_KEYS_CMD_H

int kh_cli_keys(int argc, char **argv);

#endif /* KH_KEYS_CMD_H */
