/* yaml_tree.c: libyaml event stream -> kh_yaml_node tree, bounded. */
#include "yaml_tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct {
  yaml_parser_t parser;
  size_t nodes;
  kh_error *err;
} builder;

static int fail_at(builder *b, const yaml_mark_t *m, const char *what) {
  return kh_err(b->err, KH_ERR_INVALID_ARGUMENT, "%zu:%zu: %s", m->line + 1, m->column + 1, what);
}

static kh_yaml_node *new_node(builder *b, kh_yaml_kind kind, const yaml_mark_t *m) {
  if (++b->nodes > KH_YAML_MAX_NODES) {
    fail_at(b, m, "document has too many nodes");
    return NULL;
  }
  kh_yaml_node *n = calloc(1, sizeof(*n));
  if (n == NULL) {
    kh_err(b->err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  n->kind = kind;
  n->line = (unsigned)m->line + 1;
  n->col = (unsigned)m->column + 1;
  return n;
}

static int append(kh_yaml_node *parent, kh_yaml_node *key, kh_yaml_node *item) {
  size_t n = parent->count + 1;
  kh_yaml_node **items = realloc(parent->items, n * sizeof(*items));
  if (items == NULL) return 0;
  parent->items = items;
  if (parent->kind == KH_YAML_MAP) {
    kh_yaml_node **keys = realloc(parent->keys, n * sizeof(*keys));
    if (keys == NULL) return 0;
    parent->keys = keys;
    keys[parent->count] = key;
  }
  items[parent->count] = item;
  parent->count = n;
  return 1;
}

static int next_event(builder *b, yaml_event_t *ev) {
  if (yaml_parser_parse(&b->parser, ev)) return 1;
  yaml_mark_t m = b->parser.problem_mark;
  return fail_at(b, &m, b->parser.problem ? b->parser.problem : "invalid YAML");
}

/* parse_node consumes one node starting with |ev| (already read). */
static kh_yaml_node *parse_node(builder *b, yaml_event_t *ev, int depth) {
  if (depth > KH_YAML_MAX_DEPTH) {
    fail_at(b, &ev->start_mark, "nesting is too deep");
    return NULL;
  }
  switch (ev->type) {
    case YAML_SCALAR_EVENT: {
      if (ev->data.scalar.anchor != NULL) {
        fail_at(b, &ev->start_mark, "anchors are not supported");
        return NULL;
      }
      kh_yaml_node *n = new_node(b, KH_YAML_SCALAR, &ev->start_mark);
      if (n == NULL) return NULL;
      n->value = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
      n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
      if (n->value == NULL || strlen(n->value) != ev->data.scalar.length) {
        if (n->value)
          fail_at(b, &ev->start_mark, "scalar contains a NUL byte");
        else
          kh_err(b->err, KH_ERR_NOMEM, "out of memory");
        kh_yaml_free(n);
        return NULL;
      }
      return n;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
      int is_map = ev->type == YAML_MAPPING_START_EVENT;
      if ((is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor) != NULL) {
        fail_at(b, &ev->start_mark, "anchors are not supported");
        return NULL;
      }
      kh_yaml_node *n = new_node(b, is_map ? KH_YAML_MAP : KH_YAML_SEQ, &ev->start_mark);
      if (n == NULL) return NULL;
      yaml_event_type_t end = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
      for (;;) {
        yaml_event_t e;
        if (!next_event(b, &e)) break;
        if (e.type == end) {
          yaml_event_delete(&e);
          return n;
        }
        kh_yaml_node *key = NULL;
        if (is_map) {
          if (e.type != YAML_SCALAR_EVENT) {
            fail_at(b, &e.start_mark, "mapping keys must be plain scalars");
            yaml_event_delete(&e);
            break;
          }
          key = parse_node(b, &e, depth + 1);
          yaml_event_delete(&e);
          if (key == NULL) break;
          if (kh_yaml_get(n, key->value) != NULL) {
            char msg[200];
            snprintf(msg, sizeof(msg), "duplicate key '%.100s'", key->value);
            fail_at(b, &(yaml_mark_t){.line = key->line - 1, .column = key->col - 1}, msg);
            kh_yaml_free(key);
            break;
          }
          if (!next_event(b, &e)) {
            kh_yaml_free(key);
            break;
          }
        }
        kh_yaml_node *item = parse_node(b, &e, depth + 1);
        yaml_event_delete(&e);
        if (item == NULL || !append(n, key, item)) {
          if (item != NULL) kh_err(b->err, KH_ERR_NOMEM, "out of memory");
          kh_yaml_free(key);
          kh_yaml_free(item);
          break;
        }
      }
      kh_yaml_free(n);
      return NULL;
    }
    case YAML_ALIAS_EVENT: fail_at(b, &ev->start_mark, "aliases are not supported"); return NULL;
    default: fail_at(b, &ev->start_mark, "unexpected YAML event"); return NULL;
  }
}

kh_yaml_node *kh_yaml_parse(const char *data, size_t len, kh_error *err) {
  if (len > KH_YAML_MAX_BYTES) {
    kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "1:1: file is larger than %u bytes", KH_YAML_MAX_BYTES);
    return NULL;
  }
  builder b = {.err = err};
  if (!yaml_parser_initialize(&b.parser)) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  yaml_parser_set_input_string(&b.parser, (const unsigned char *)data, len);
  kh_yaml_node *root = NULL;
  int docs = 0, ok = 1;
  while (ok) {
    yaml_event_t ev;
    if (!next_event(&b, &ev)) {
      ok = 0;
      break;
    }
    yaml_event_type_t t = ev.type;
    yaml_mark_t m = ev.start_mark;
    if (t == YAML_STREAM_END_EVENT) {
      yaml_event_delete(&ev);
      break;
    }
    if (t == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
      ok = fail_at(&b, &m, "only one YAML document is allowed");
    } else if (t != YAML_STREAM_START_EVENT && t != YAML_DOCUMENT_START_EVENT &&
               t != YAML_DOCUMENT_END_EVENT) {
      root = parse_node(&b, &ev, 0);
      ok = root != NULL;
    }
    yaml_event_delete(&ev);
  }
  if (ok && root == NULL) root = new_node(&b, KH_YAML_MAP, &(yaml_mark_t){0});
  yaml_parser_delete(&b.parser);
  if (!ok) {
    kh_yaml_free(root);
    return NULL;
  }
  return root;
}

void kh_yaml_free(kh_yaml_node *n) {
  if (n == NULL) return;
  for (size_t i = 0; i < n->count; i++) {
    if (n->keys) kh_yaml_free(n->keys[i]);
    kh_yaml_free(n->items[i]);
  }
  free(n->keys);
  free(n->items);
  free(n->value);
  free(n);
}

const kh_yaml_node *kh_yaml_get(const kh_yaml_node *map, const char *key) {
  if (map == NULL || map->kind != KH_YAML_MAP) return NULL;
  for (size_t i = 0; i < map->count; i++)
    if (strcmp(map->keys[i]->value, key) == 0) return map->items[i];
  return NULL;
}
