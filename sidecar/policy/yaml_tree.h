/* yaml_tree.h: a small, bounded YAML document tree (libyaml events in, a
 * tree of maps, sequences and scalars out), with the line and column of each
 * node so configuration errors can name the exact place. Anchors, aliases and
 * multi-document streams are refused: configuration stays literal. */
#ifndef KH_YAML_TREE_H
#define KH_YAML_TREE_H

#include <stddef.h>

#include "kh_error.h"

typedef enum { KH_YAML_SCALAR, KH_YAML_SEQ, KH_YAML_MAP } kh_yaml_kind;

typedef struct kh_yaml_node {
  kh_yaml_kind kind;
  unsigned line, col; /* 1-based */
  char *value;        /* scalar text (NUL-terminated) */
  int quoted;         /* scalar was quoted: never a number or boolean */
  /* SEQ: items; MAP: keys[i] -> items[i] (keys are scalars) */
  struct kh_yaml_node **keys;
  struct kh_yaml_node **items;
  size_t count;
} kh_yaml_node;

#define KH_YAML_MAX_BYTES (1u << 20)
#define KH_YAML_MAX_DEPTH 16
#define KH_YAML_MAX_NODES 20000

/* kh_yaml_parse parses |len| bytes. An empty document yields an empty map.
 * On failure |err| reads "LINE:COL: reason" (KH_ERR_INVALID_ARGUMENT). */
KH_MUST_USE kh_yaml_node *kh_yaml_parse(const char *data, size_t len, kh_error *err);
void kh_yaml_free(kh_yaml_node *n);

/* kh_yaml_get returns the value of |key| in map |map|, or NULL. */
const kh_yaml_node *kh_yaml_get(const kh_yaml_node *map, const char *key);

#endif /* KH_YAML_TREE_H */
