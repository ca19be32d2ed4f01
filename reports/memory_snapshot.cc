#include "reports/memory_snapshot.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <istream>
#include <map>
#include <ostream>
#include <unordered_map>

#include "importer/validate.h"

namespace vramsim {

// ---- Pickle encoding --------------------------------------------------------------------

namespace {

// Opcodes (Lib/pickle.py).
enum : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kFloatText = 'F',
  kIntText = 'I',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kLongText = 'L',
  kBinInt2 = 'M',
  kNone = 'N',
  kPersId = 'P',
  kBinPersId = 'Q',
  kReduce = 'R',
  kStringText = 'S',
  kBinString = 'T',
  kShortBinString = 'U',
  kUnicodeText = 'V',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kGet = 'g',
  kBinGet = 'h',
  kInst = 'i',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kObj = 'o',
  kPut = 'p',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinFloat = 'G',
  kProto = 0x80,
  kNewObj = 0x81,
  kExt1 = 0x82,
  kExt2 = 0x83,
  kExt4 = 0x84,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kEmptySet = 0x8f,
  kAddItems = 0x90,
  kFrozenSet = 0x91,
  kNewObjEx = 0x92,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
  kByteArray8 = 0x96,
  kNextBuffer = 0x97,
  kReadOnlyBuffer = 0x98,
};

constexpr uint32_t kBatchSize = 1000;  // Lib/pickle.py's _BATCHSIZE

bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t len = Utf8SequenceLength(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

}  // namespace

std::string Utf8OrEscaped(std::string_view text) {
  if (ValidUtf8(text)) return std::string(text);
  return Printable(std::string(text), text.size() * 4 + 4);
}

PickleWriter::PickleWriter(std::ostream& out) : out_(out) {
  Op(kProto);
  Op(4);
}

void PickleWriter::MaybeFlush() {
  if (buf_.size() < (1u << 20)) return;
  out_.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
  bytes_ += buf_.size();
  buf_.clear();
}

// A container's items are written between MARK and APPENDS/SETITEMS, at most kBatchSize at
// a time; an empty container is its EMPTY_* opcode alone, as Python writes it.
void PickleWriter::BeforeValue() {
  if (open_.empty()) return;
  Open& o = open_.back();
  if (o.batch == 0 && !o.have_key) Op(kMark);
}

void PickleWriter::AfterValue() {
  MaybeFlush();
  if (open_.empty()) return;
  Open& o = open_.back();
  if (o.dict) {
    o.have_key = !o.have_key;
    if (o.have_key) return;
  }
  if (++o.batch == kBatchSize) {
    Op(o.dict ? kSetItems : kAppends);
    o.batch = 0;
  }
}

void PickleWriter::None() {
  BeforeValue();
  Op(kNone);
  AfterValue();
}

void PickleWriter::Bool(bool v) {
  BeforeValue();
  Op(v ? kNewTrue : kNewFalse);
  AfterValue();
}

void PickleWriter::Int(int64_t v) {
  BeforeValue();
  if (v >= 0 && v < 256) {
    Op(kBinInt1);
    Op(static_cast<uint8_t>(v));
  } else if (v >= 0 && v < 65536) {
    Op(kBinInt2);
    Op(static_cast<uint8_t>(v & 0xff));
    Op(static_cast<uint8_t>(v >> 8));
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    Op(kBinInt);
    auto u = static_cast<uint32_t>(static_cast<int32_t>(v));
    for (int k = 0; k < 4; ++k) Op(static_cast<uint8_t>(u >> (8 * k)));
  } else {
    // LONG1: little-endian two's complement in as few bytes as keep the sign (at most 8).
    auto u = static_cast<uint64_t>(v);
    uint8_t bytes[8];
    for (int k = 0; k < 8; ++k) bytes[k] = static_cast<uint8_t>(u >> (8 * k));
    int n = 8;
    while (n > 1) {
      uint8_t top = bytes[n - 1], next = bytes[n - 2];
      if ((top == 0 && !(next & 0x80)) || (top == 0xff && (next & 0x80))) {
        --n;
      } else {
        break;
      }
    }
    Op(kLong1);
    Op(static_cast<uint8_t>(n));
    Raw(bytes, static_cast<size_t>(n));
  }
  AfterValue();
}

bool PickleWriter::UInt(uint64_t v) {
  if (v > static_cast<uint64_t>(INT64_MAX)) return false;
  Int(static_cast<int64_t>(v));
  return true;
}

void PickleWriter::Float(double v) {
  BeforeValue();
  Op(kBinFloat);
  uint64_t u;
  std::memcpy(&u, &v, 8);
  for (int k = 7; k >= 0; --k) Op(static_cast<uint8_t>(u >> (8 * k)));  // big-endian
  AfterValue();
}

void PickleWriter::Str(std::string_view utf8) {
  std::string escaped;
  if (!ValidUtf8(utf8)) {
    escaped = Utf8OrEscaped(utf8);
    utf8 = escaped;
  }
  BeforeValue();
  if (utf8.size() < 256) {
    Op(kShortBinUnicode);
    Op(static_cast<uint8_t>(utf8.size()));
  } else {
    // BINUNICODE's length is 4 bytes; longer text is cut (names never come close).
    if (utf8.size() > UINT32_MAX) utf8 = utf8.substr(0, UINT32_MAX);
    Op(kBinUnicode);
    auto n = static_cast<uint32_t>(utf8.size());
    for (int k = 0; k < 4; ++k) Op(static_cast<uint8_t>(n >> (8 * k)));
  }
  Raw(utf8.data(), utf8.size());
  AfterValue();
}

void PickleWriter::BeginList() {
  BeforeValue();
  Op(kEmptyList);
  open_.push_back(Open{false, 0, false});
}

void PickleWriter::BeginDict() {
  BeforeValue();
  Op(kEmptyDict);
  open_.push_back(Open{true, 0, false});
}

void PickleWriter::EndList() {
  if (open_.empty()) return;
  if (open_.back().batch > 0) Op(kAppends);
  open_.pop_back();
  AfterValue();
}

void PickleWriter::EndDict() {
  if (open_.empty()) return;
  if (open_.back().batch > 0) Op(kSetItems);
  open_.pop_back();
  AfterValue();
}

bool PickleWriter::Finish() {
  Op(kStop);
  out_.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
  bytes_ += buf_.size();
  buf_.clear();
  out_.flush();
  return static_cast<bool>(out_);
}

// ---- Pickle decoding --------------------------------------------------------------------

PickleKind PickleRef::kind() const {
  return valid() ? doc_->nodes_[index_].kind : PickleKind::kNone;
}

std::optional<int64_t> PickleRef::as_int() const {
  if (!valid()) return std::nullopt;
  const auto& n = doc_->nodes_[index_];
  if (n.kind == PickleKind::kInt || n.kind == PickleKind::kBool) return n.i;
  return std::nullopt;
}

std::optional<double> PickleRef::as_number() const {
  if (!valid()) return std::nullopt;
  const auto& n = doc_->nodes_[index_];
  if (n.kind == PickleKind::kInt) return static_cast<double>(n.i);
  if (n.kind == PickleKind::kFloat) return n.f;
  return std::nullopt;
}

std::optional<bool> PickleRef::as_bool() const {
  if (!is(PickleKind::kBool)) return std::nullopt;
  return doc_->nodes_[index_].i != 0;
}

std::string_view PickleRef::str() const {
  if (!valid()) return {};
  const auto& n = doc_->nodes_[index_];
  if (n.kind != PickleKind::kStr && n.kind != PickleKind::kBytes) return {};
  return std::string_view(doc_->strings_).substr(n.str_offset, n.str_size);
}

size_t PickleRef::size() const {
  if (!valid()) return 0;
  const auto& n = doc_->nodes_[index_];
  if (n.kind == PickleKind::kDict) return n.items.size() / 2;
  if (n.kind == PickleKind::kList || n.kind == PickleKind::kTuple) return n.items.size();
  return 0;
}

PickleRef PickleRef::at(size_t i) const {
  if (!is(PickleKind::kList) && !is(PickleKind::kTuple)) return {};
  const auto& items = doc_->nodes_[index_].items;
  return i < items.size() ? PickleRef(doc_, items[i]) : PickleRef();
}

PickleRef PickleRef::key(size_t i) const {
  if (!is(PickleKind::kDict)) return {};
  const auto& items = doc_->nodes_[index_].items;
  return 2 * i < items.size() ? PickleRef(doc_, items[2 * i]) : PickleRef();
}

PickleRef PickleRef::value(size_t i) const {
  if (!is(PickleKind::kDict)) return {};
  const auto& items = doc_->nodes_[index_].items;
  return 2 * i + 1 < items.size() ? PickleRef(doc_, items[2 * i + 1]) : PickleRef();
}

PickleRef PickleRef::get(std::string_view key) const {
  if (!is(PickleKind::kDict)) return {};
  const auto& items = doc_->nodes_[index_].items;
  for (size_t i = items.size(); i >= 2; i -= 2) {
    PickleRef k(doc_, items[i - 2]);
    if (k.is(PickleKind::kStr) && k.str() == key) return PickleRef(doc_, items[i - 1]);
  }
  return {};
}

class PickleParser {
 public:
  PickleParser(std::string_view bytes, const PickleLimits& limits) : b_(bytes), limits_(limits) {}

  Result<PickleDoc> Run();

 private:
  using Node = PickleDoc::Node;

  Error Fail(const std::string& what) const {
    return Error{fmt::format("pickle: {} (opcode 0x{:02x} at offset {})", what, op_, at_)};
  }
  bool Need(uint64_t n) const { return n <= b_.size() - pos_; }
  uint64_t ReadLE(int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v |= uint64_t{static_cast<uint8_t>(b_[pos_ + k])} << (8 * k);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  // A new value; false when over the limit.
  bool New(Node node) {
    // Values are referenced by 32-bit index, whatever the limit says.
    if (++budget_ > limits_.max_values || doc_.nodes_.size() >= UINT32_MAX) return false;
    doc_.nodes_.push_back(std::move(node));
    stack_.push_back(static_cast<uint32_t>(doc_.nodes_.size() - 1));
    return true;
  }
  bool NewScalar(PickleKind kind, int64_t i = 0, double f = 0) {
    Node n;
    n.kind = kind;
    n.i = i;
    n.f = f;
    return New(std::move(n));
  }
  bool NewString(PickleKind kind, uint64_t size) {
    Node n;
    n.kind = kind;
    n.str_offset = doc_.strings_.size();
    n.str_size = size;
    doc_.strings_.append(b_.data() + pos_, size);
    pos_ += size;
    return New(std::move(n));
  }
  size_t Base() const { return marks_.empty() ? 0 : marks_.back(); }
  bool Charge(uint64_t items) {
    budget_ += items;
    return budget_ <= limits_.max_values;
  }
  std::optional<Error> CheckGraph();

  std::string_view b_;
  PickleLimits limits_;
  PickleDoc doc_;
  size_t pos_ = 0, at_ = 0;
  uint8_t op_ = 0;
  uint64_t budget_ = 0;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, uint32_t> memo_;
};

namespace {

const char* RefusedOpcodeName(uint8_t op) {
  switch (op) {
    case kGlobal:
      return "GLOBAL";
    case kStackGlobal:
      return "STACK_GLOBAL";
    case kReduce:
      return "REDUCE";
    case kBuild:
      return "BUILD";
    case kInst:
      return "INST";
    case kObj:
      return "OBJ";
    case kNewObj:
      return "NEWOBJ";
    case kNewObjEx:
      return "NEWOBJ_EX";
    case kExt1:
    case kExt2:
    case kExt4:
      return "EXT";
    case kPersId:
    case kBinPersId:
      return "PERSID";
    default:
      return nullptr;
  }
}

}  // namespace

// Every container reachable from the root: no cycle (a list inside itself), nesting within
// the limit. Heights are computed once per value, so shared values cost nothing more.
std::optional<Error> PickleParser::CheckGraph() {
  const auto& nodes = doc_.nodes_;
  std::vector<uint32_t> height(nodes.size(), 0);  // 0: unvisited
  std::vector<uint8_t> on_path(nodes.size(), 0);
  struct Frame {
    uint32_t node;
    size_t next;
  };
  std::vector<Frame> path{{doc_.root_, 0}};
  on_path[doc_.root_] = 1;
  while (!path.empty()) {
    Frame& f = path.back();
    const Node& n = nodes[f.node];
    if (f.next < n.items.size()) {
      uint32_t c = n.items[f.next++];
      if (on_path[c]) return Error{"pickle: a container contains itself (recursive value)"};
      if (height[c] != 0) continue;
      if (path.size() >= limits_.max_depth) {
        return Error{fmt::format("pickle: values nested deeper than {}", limits_.max_depth)};
      }
      on_path[c] = 1;
      path.push_back({c, 0});
      continue;
    }
    uint32_t h = 1;
    for (uint32_t c : n.items) h = std::max(h, height[c] + 1);
    height[f.node] = h;
    on_path[f.node] = 0;
    path.pop_back();
  }
  return std::nullopt;
}

Result<PickleDoc> PickleParser::Run() {
  if (b_.size() > limits_.max_input_bytes) {
    return Error{
        fmt::format("pickle: {} bytes, over the limit of {}", b_.size(), limits_.max_input_bytes)};
  }
  auto truncated = [&]() { return Fail("truncated input"); };
  auto underflow = [&]() { return Fail("stack underflow (malformed pickle)"); };
  auto over = [&]() {
    return Fail(fmt::format("more than {} values (limit)", limits_.max_values));
  };
  while (true) {
    if (pos_ >= b_.size()) {
      at_ = pos_;
      op_ = 0;
      return Error{fmt::format("pickle: truncated input: no STOP opcode in {} bytes", b_.size())};
    }
    at_ = pos_;
    op_ = static_cast<uint8_t>(b_[pos_++]);
    if (stack_.size() + marks_.size() > limits_.max_values) return over();
    switch (op_) {
      case kProto: {
        if (!Need(1)) return truncated();
        uint64_t v = ReadLE(1);
        if (v > 5) return Fail(fmt::format("protocol {} (2 to 5 are read)", v));
        break;
      }
      case kFrame: {
        if (!Need(8)) return truncated();
        uint64_t n = ReadLE(8);
        if (!Need(n)) return Fail("frame longer than the input");
        break;
      }
      case kStop: {
        if (stack_.size() <= Base()) return underflow();
        doc_.root_ = stack_.back();
        if (auto e = CheckGraph()) return *e;
        return std::move(doc_);
      }
      case kNone:
        if (!NewScalar(PickleKind::kNone)) return over();
        break;
      case kNewTrue:
      case kNewFalse:
        if (!NewScalar(PickleKind::kBool, op_ == kNewTrue ? 1 : 0)) return over();
        break;
      case kBinInt: {
        if (!Need(4)) return truncated();
        auto v = static_cast<int32_t>(static_cast<uint32_t>(ReadLE(4)));
        if (!NewScalar(PickleKind::kInt, v)) return over();
        break;
      }
      case kBinInt1:
      case kBinInt2: {
        int n = op_ == kBinInt1 ? 1 : 2;
        if (!Need(n)) return truncated();
        if (!NewScalar(PickleKind::kInt, static_cast<int64_t>(ReadLE(n)))) return over();
        break;
      }
      case kLong1:
      case kLong4: {
        int w = op_ == kLong1 ? 1 : 4;
        if (!Need(w)) return truncated();
        uint64_t n = ReadLE(w);
        if (op_ == kLong4 && n > INT32_MAX) return Fail("negative LONG4 length");
        if (n > 8) return Fail(fmt::format("integer of {} bytes (at most 8 are read)", n));
        if (!Need(n)) return truncated();
        uint64_t u = ReadLE(static_cast<int>(n));
        if (n > 0 && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~uint64_t{0} << (8 * n);  // sign
        if (!NewScalar(PickleKind::kInt, static_cast<int64_t>(u))) return over();
        break;
      }
      case kBinFloat: {
        if (!Need(8)) return truncated();
        uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = (u << 8) | static_cast<uint8_t>(b_[pos_ + k]);
        pos_ += 8;
        double f;
        std::memcpy(&f, &u, 8);
        if (!NewScalar(PickleKind::kFloat, 0, f)) return over();
        break;
      }
      case kShortBinUnicode:
      case kBinUnicode:
      case kBinUnicode8:
      case kShortBinBytes:
      case kBinBytes:
      case kBinBytes8:
      case kShortBinString:
      case kBinString: {
        int w = (op_ == kShortBinUnicode || op_ == kShortBinBytes || op_ == kShortBinString) ? 1
                : (op_ == kBinUnicode8 || op_ == kBinBytes8)                                 ? 8
                                                                                             : 4;
        if (!Need(w)) return truncated();
        uint64_t n = ReadLE(w);
        if (op_ == kBinString && n > INT32_MAX) return Fail("negative BINSTRING length");
        if (!Need(n)) return truncated();
        bool text = op_ == kShortBinUnicode || op_ == kBinUnicode || op_ == kBinUnicode8 ||
                    op_ == kShortBinString || op_ == kBinString;
        if (text && !ValidUtf8(b_.substr(pos_, n))) return Fail("string is not valid UTF-8");
        if (!NewString(text ? PickleKind::kStr : PickleKind::kBytes, n)) return over();
        break;
      }
      case kEmptyList:
      case kEmptyDict:
      case kEmptyTuple: {
        PickleKind k = op_ == kEmptyList   ? PickleKind::kList
                       : op_ == kEmptyDict ? PickleKind::kDict
                                           : PickleKind::kTuple;
        if (!NewScalar(k)) return over();
        break;
      }
      case kMark:
        marks_.push_back(stack_.size());
        break;
      case kPop:
        if (stack_.size() > Base()) {
          stack_.pop_back();
        } else if (!marks_.empty()) {
          marks_.pop_back();
        } else {
          return underflow();
        }
        break;
      case kPopMark:
        if (marks_.empty()) return Fail("POP_MARK without MARK");
        stack_.resize(marks_.back());
        marks_.pop_back();
        break;
      case kDup:
        if (stack_.size() <= Base()) return underflow();
        stack_.push_back(stack_.back());
        break;
      case kAppend:
      case kSetItem: {
        size_t take = op_ == kAppend ? 1 : 2;
        if (stack_.size() < Base() + take + 1) return underflow();
        Node& target = doc_.nodes_[stack_[stack_.size() - take - 1]];
        PickleKind want = op_ == kAppend ? PickleKind::kList : PickleKind::kDict;
        if (target.kind != want) {
          return Fail(op_ == kAppend ? "APPEND to a value that is not a list"
                                     : "SETITEM on a value that is not a dict");
        }
        if (op_ == kSetItem) {
          PickleKind kk = doc_.nodes_[stack_[stack_.size() - 2]].kind;
          if (kk == PickleKind::kList || kk == PickleKind::kDict) return Fail("unhashable key");
        }
        if (!Charge(take)) return over();
        target.items.insert(target.items.end(), stack_.end() - static_cast<long>(take),
                            stack_.end());
        stack_.resize(stack_.size() - take);
        break;
      }
      case kAppends:
      case kSetItems:
      case kList:
      case kTuple:
      case kDict: {
        if (marks_.empty()) return Fail("container opcode without MARK");
        size_t mark = marks_.back();
        marks_.pop_back();
        size_t count = stack_.size() - mark;
        bool pairs = op_ == kSetItems || op_ == kDict;
        if (pairs && count % 2 != 0) return Fail("odd number of dict keys and values");
        if (pairs) {
          for (size_t k = mark; k < stack_.size(); k += 2) {
            PickleKind kk = doc_.nodes_[stack_[k]].kind;
            if (kk == PickleKind::kList || kk == PickleKind::kDict) return Fail("unhashable key");
          }
        }
        if (!Charge(count)) return over();
        if (op_ == kAppends || op_ == kSetItems) {
          if (mark <= Base()) return underflow();
          Node& target = doc_.nodes_[stack_[mark - 1]];
          if (target.kind != (op_ == kAppends ? PickleKind::kList : PickleKind::kDict)) {
            return Fail(op_ == kAppends ? "APPENDS to a value that is not a list"
                                        : "SETITEMS on a value that is not a dict");
          }
          target.items.insert(target.items.end(), stack_.begin() + static_cast<long>(mark),
                              stack_.end());
          stack_.resize(mark);
        } else {
          Node n;
          n.kind = op_ == kList    ? PickleKind::kList
                   : op_ == kTuple ? PickleKind::kTuple
                                   : PickleKind::kDict;
          n.items.assign(stack_.begin() + static_cast<long>(mark), stack_.end());
          stack_.resize(mark);
          if (!New(std::move(n))) return over();
        }
        break;
      }
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        size_t count = op_ - kTuple1 + 1;
        if (stack_.size() < Base() + count) return underflow();
        if (!Charge(count)) return over();
        Node n;
        n.kind = PickleKind::kTuple;
        n.items.assign(stack_.end() - static_cast<long>(count), stack_.end());
        stack_.resize(stack_.size() - count);
        if (!New(std::move(n))) return over();
        break;
      }
      case kBinPut:
      case kLongBinPut:
      case kMemoize: {
        uint32_t index;
        if (op_ == kMemoize) {
          index = static_cast<uint32_t>(memo_.size());
        } else {
          int w = op_ == kBinPut ? 1 : 4;
          if (!Need(w)) return truncated();
          index = static_cast<uint32_t>(ReadLE(w));
        }
        if (stack_.size() <= Base()) return underflow();
        if (!Charge(1)) return over();
        memo_[index] = stack_.back();
        break;
      }
      case kBinGet:
      case kLongBinGet: {
        int w = op_ == kBinGet ? 1 : 4;
        if (!Need(w)) return truncated();
        auto index = static_cast<uint32_t>(ReadLE(w));
        auto it = memo_.find(index);
        if (it == memo_.end()) return Fail(fmt::format("memo entry {} was never stored", index));
        stack_.push_back(it->second);
        break;
      }
      default: {
        if (const char* name = RefusedOpcodeName(op_)) {
          return Fail(fmt::format(
              "{} would import or call Python code; only plain data (dict, list, tuple, str, "
              "bytes, int, float, bool, None) is read",
              name));
        }
        if (op_ == kByteArray8 || op_ == kNextBuffer || op_ == kReadOnlyBuffer ||
            op_ == kEmptySet || op_ == kAddItems || op_ == kFrozenSet) {
          return Fail("unsupported opcode (bytearray, out-of-band buffer or set)");
        }
        if (op_ == kIntText || op_ == kLongText || op_ == kFloatText || op_ == kStringText ||
            op_ == kUnicodeText || op_ == kGet || op_ == kPut) {
          return Fail("protocol 0 (text) opcode; only protocols 1 to 5 are read");
        }
        return Fail("unknown opcode");
      }
    }
  }
}

Result<PickleDoc> ParsePickle(std::string_view bytes, const PickleLimits& limits) {
  return PickleParser(bytes, limits).Run();
}

Result<PickleDoc> ReadPickle(std::istream& in, const PickleLimits& limits) {
  std::string data;
  char chunk[1 << 16];
  while (in) {
    in.read(chunk, sizeof chunk);
    data.append(chunk, static_cast<size_t>(in.gcount()));
    if (data.size() > limits.max_input_bytes) {
      return Error{fmt::format("pickle: input over the limit of {} bytes", limits.max_input_bytes)};
    }
  }
  if (in.bad()) return Error{"pickle: read error"};
  return ParsePickle(data, limits);
}

Result<PickleDoc> ReadPickleFile(const std::string& path, const PickleLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{fmt::format("cannot open {}: {}", Printable(path), std::strerror(errno))};
  auto doc = ReadPickle(in, limits);
  if (!doc) return Error{Printable(path) + ": " + doc.error().message};
  return doc;
}

// ---- The snapshot -----------------------------------------------------------------------

namespace {

std::string_view SnapshotCategory(Category c) {
  switch (c) {
    case Category::kParameters:
      return "parameter";
    case Category::kBuffers:
      return "buffer";
    case Category::kGradients:
      return "gradient";
    case Category::kOptimizerState:
      return "optimizer_state";
    case Category::kSavedActivations:
      return "activation";
    case Category::kTransient:
      return "temporary";
    case Category::kBatch:
      return "input";
  }
  return "unknown";
}

// Who made an allocation: a buffer of the trace or an extra allocation (workspace).
struct Origin {
  BufferId buffer = -1;
  int extra = -1;
};

struct Entry {
  enum class Action : uint8_t {
    kAlloc,
    kFreeRequested,
    kFreeCompleted,
    kSegmentAlloc,
    kSegmentFree,
    kOom
  };
  Action action = Action::kAlloc;
  uint64_t addr = 0;  // device_free for kOom
  uint64_t size = 0;
  Origin origin;
  StepId step = -1;  // the op at which it happens
};

struct Segment {
  uint64_t size = 0;
  bool small = false;
  Origin origin;
  StepId step = -1;
};

struct Live {
  uint64_t requested = 0;
  Origin origin;
  StepId step = -1;
};

// Replays the trace as ReplayCachingAllocator does (simulator/allocator.cc), recording what
// PyTorch's allocator would record: the same CachingAllocator, driven in the same order, with
// the segments and blocks followed from outside through its public counters.
class Recorder {
 public:
  Recorder(const Trace& trace, const AllocatorReplayOptions& options)
      : t_(trace), o_(options), a_(options.allocator) {}

  void Run();

  const Trace& t_;
  const AllocatorReplayOptions& o_;
  CachingAllocator a_;
  bool measuring_ = false;
  bool warm_ = false;
  bool oom_ = false;
  uint64_t max_allocated_ = 0, max_requested_ = 0, max_reserved_ = 0;
  std::vector<Entry> entries_;
  std::map<uint64_t, Segment> segments_;  // by address
  std::map<uint64_t, Live> live_;         // allocated blocks by address

 private:
  Phase PhaseOf(const Event& e) const { return t_.steps[e.step].phase; }
  void Record(Entry e) {
    if (measuring_) entries_.push_back(e);
  }
  void Note() {
    if (measuring_) {
      max_allocated_ = std::max(max_allocated_, a_.allocated());
      max_requested_ = std::max(max_requested_, a_.requested());
    }
    max_reserved_ = std::max(max_reserved_, a_.reserved());
  }
  bool SegmentEmpty(uint64_t base, uint64_t size) const {
    auto it = live_.lower_bound(base);
    return it == live_.end() || it->first >= base + size;
  }
  // release_cached_blocks() freed every segment without an allocated block: large pool
  // first, then small, each by (size, address) as the pools' free sets are ordered.
  void ReleaseEmpty(StepId step) {
    std::vector<std::pair<std::pair<bool, uint64_t>, uint64_t>> victims;
    for (const auto& [addr, s] : segments_) {
      if (SegmentEmpty(addr, s.size)) victims.push_back({{s.small, s.size}, addr});
    }
    std::sort(victims.begin(), victims.end());
    for (const auto& [key, addr] : victims) {
      Record({Entry::Action::kSegmentFree, addr, key.second, segments_[addr].origin, step});
      segments_.erase(addr);
    }
  }
  std::optional<uint64_t> Malloc(uint64_t bytes, Origin origin, StepId step) {
    uint64_t made = a_.segments_allocated(), freed = a_.segments_freed();
    auto p = a_.Malloc(bytes);
    if (a_.segments_freed() != freed) ReleaseEmpty(step);
    if (!p) {
      oom_ = true;
      uint64_t cap = o_.allocator.capacity_bytes;
      Record({Entry::Action::kOom, cap > a_.reserved() ? cap - a_.reserved() : 0, bytes, origin,
              step});
      return std::nullopt;
    }
    if (*p != 0) {
      uint64_t rounded = CachingAllocator::RoundSize(bytes);
      if (a_.segments_allocated() != made) {
        Segment s{CachingAllocator::AllocationSize(rounded), CachingAllocator::IsSmall(rounded),
                  origin, step};
        segments_[*p] = s;
        Record({Entry::Action::kSegmentAlloc, *p, s.size, origin, step});
      }
      live_[*p] = Live{bytes, origin, step};
      Record({Entry::Action::kAlloc, *p, bytes, origin, step});
    }
    Note();
    return p;
  }
  void Free(uint64_t addr, StepId step) {
    if (addr == 0) return;
    auto it = live_.find(addr);
    if (it == live_.end()) return;
    Record({Entry::Action::kFreeRequested, addr, it->second.requested, it->second.origin, step});
    Record({Entry::Action::kFreeCompleted, addr, it->second.requested, it->second.origin, step});
    live_.erase(it);
    a_.Free(addr);
  }
};

void Recorder::Run() {
  const size_t n = t_.buffers.size();
  std::vector<uint64_t> addr(n, 0);
  bool balanced = true;
  {
    std::vector<int8_t> state(n, 0);
    for (const Event& e : t_.events) {
      if (e.kind == Event::Kind::kAlloc) {
        state[e.buffer] = PhaseOf(e) == Phase::kSetup ? 1 : 2;
      } else {
        if (state[e.buffer] != 2) balanced = false;
        state[e.buffer] = 0;
      }
    }
    for (int8_t s : state) balanced = balanced && s != 2;
  }
  warm_ = o_.warmup_step && balanced;
  measuring_ = !warm_;
  std::vector<bool> extra_done(o_.extra.size(), false);

  auto extras_before = [&](const Event& e) {
    for (size_t k = 0; k < o_.extra.size(); ++k) {
      if (extra_done[k] || o_.extra[k].phase != PhaseOf(e)) continue;
      extra_done[k] = true;
      if (!Malloc(o_.extra[k].bytes, Origin{-1, static_cast<int>(k)}, e.step)) return false;
    }
    return true;
  };
  auto apply = [&](const Event& e) {
    if (e.kind == Event::Kind::kFree) {
      Free(addr[e.buffer], e.step);
      addr[e.buffer] = 0;
      return true;
    }
    auto p = Malloc(t_.buffers[e.buffer].bytes, Origin{e.buffer, -1}, e.step);
    if (!p) return false;
    addr[e.buffer] = *p;
    return true;
  };
  const StepId last_step = t_.steps.empty() ? 0 : StepId(t_.steps.size() - 1);

  if (warm_) {
    std::vector<BufferId> state;
    size_t i = 0;
    for (; i < t_.events.size() && PhaseOf(t_.events[i]) == Phase::kSetup; ++i) {
      const Event& e = t_.events[i];
      if (e.kind == Event::Kind::kAlloc &&
          t_.buffers[e.buffer].category == Category::kOptimizerState) {
        state.push_back(e.buffer);
        continue;
      }
      if (!apply(e)) return;
    }
    const size_t first_step_event = i;
    bool state_made = false;
    auto make_state = [&](StepId step) {
      state_made = true;
      for (BufferId b : state) {
        auto p = Malloc(t_.buffers[b].bytes, Origin{b, -1}, step);
        if (!p) return false;
        addr[b] = *p;
      }
      return true;
    };
    for (; i < t_.events.size(); ++i) {
      const Event& e = t_.events[i];
      if (PhaseOf(e) == Phase::kSetup) {
        if (!apply(e)) return;
        continue;
      }
      if (!state_made && PhaseOf(e) == Phase::kOptimizer && !make_state(e.step)) return;
      if (!extras_before(e) || !apply(e)) return;
    }
    if (!state_made && !make_state(last_step)) return;
    // torch.cuda.reset_peak_memory_stats() and _record_memory_history(), then step 2.
    measuring_ = true;
    max_allocated_ = a_.allocated();
    max_requested_ = a_.requested();
    for (i = first_step_event; i < t_.events.size(); ++i) {
      if (PhaseOf(t_.events[i]) == Phase::kSetup) continue;
      if (!apply(t_.events[i])) return;
    }
  } else {
    for (const Event& e : t_.events) {
      if (!extras_before(e) || !apply(e)) return;
    }
  }
  for (size_t k = 0; k < o_.extra.size(); ++k) {
    if (extra_done[k]) continue;
    extra_done[k] = true;
    if (!Malloc(o_.extra[k].bytes, Origin{-1, static_cast<int>(k)}, last_step)) return;
  }
}

class SnapshotWriter {
 public:
  SnapshotWriter(const Trace& t, const AllocatorReplayOptions& o, PickleWriter& w)
      : t_(t), o_(o), w_(w) {}

  void Frame(std::string_view filename, int64_t line, std::string_view name) {
    w_.BeginDict();
    w_.Str("filename");
    w_.Str(filename);
    w_.Str("line");
    w_.Int(line);
    w_.Str("name");
    w_.Str(name);
    w_.EndDict();
  }

  // The frames of an allocation made (or freed) at `step`.
  void Frames(Origin origin, StepId step) {
    w_.BeginList();
    if (origin.extra >= 0) {
      Frame("vramsim", 0, Printable(o_.extra[origin.extra].name) + " (library workspace)");
    } else if (origin.buffer >= 0) {
      const Buffer& b = t_.buffers[origin.buffer];
      std::string what(SnapshotCategory(b.category));
      what += ": ";
      what += b.why.empty() ? std::string(CategoryName(b.category)) : Printable(b.why);
      Frame(Printable(b.name), origin.buffer, what);
      if (step >= 0 && static_cast<size_t>(step) < t_.steps.size()) {
        const Step& s = t_.steps[step];
        std::string op = Printable(s.op_type);
        if (!s.name.empty() && s.name != s.op_type) op += " " + Printable(s.name);
        Frame(s.scope.empty() ? "/" : Printable(s.scope), step, op);
        Frame("vramsim", 0, PhaseName(s.phase));
      }
    }
    w_.EndList();
  }

  void Str(std::string_view key, std::string_view v) {
    w_.Str(key);
    w_.Str(v);
  }
  void Int(std::string_view key, uint64_t v) {
    w_.Str(key);
    // Addresses and sizes are below 2^63 when the trace passed WriteMemorySnapshot's bound;
    // a value above is written as -1 (keeping the dict whole) and the write fails.
    if (!w_.UInt(v)) {
      w_.Int(-1);
      overflow_ = true;
    }
  }
  bool overflow() const { return overflow_; }

  void Write(const Recorder& r) {
    w_.BeginDict();
    w_.Str("segments");
    w_.BeginList();
    for (const auto& [base, s] : r.segments_) WriteSegment(r, base, s);
    w_.EndList();

    w_.Str("device_traces");
    w_.BeginList();
    w_.BeginList();
    uint64_t time = 0;
    for (const Entry& e : r.entries_) {
      w_.BeginDict();
      static constexpr std::array<const char*, 6> kActions = {
          "alloc", "free_requested", "free_completed", "segment_alloc", "segment_free", "oom"};
      Str("action", kActions[static_cast<size_t>(e.action)]);
      Int(e.action == Entry::Action::kOom ? "device_free" : "addr", e.addr);
      Int("size", e.size);
      Int("stream", 0);
      Int("time_us", time++);
      w_.Str("frames");
      Frames(e.origin, e.step);
      if (e.action == Entry::Action::kAlloc) {
        Str("category", e.origin.buffer >= 0
                            ? SnapshotCategory(t_.buffers[e.origin.buffer].category)
                            : std::string_view("unknown"));
      } else if (e.action == Entry::Action::kSegmentAlloc) {
        Str("category", "unknown");
      }
      w_.EndDict();
    }
    w_.EndList();
    w_.EndList();

    w_.Str("allocator_settings");
    w_.BeginDict();
    Str("PYTORCH_CUDA_ALLOC_CONF", "");
    w_.Str("max_split_size");
    w_.Int(-1);
    w_.Str("garbage_collection_threshold");
    w_.Float(0.0);
    w_.Str("expandable_segments");
    w_.Bool(false);
    w_.Str("roundup_power2_divisions");
    w_.BeginDict();
    for (uint64_t k = 1; k <= 32768; k *= 2) Int(std::to_string(k), 0);
    w_.EndDict();
    w_.EndDict();

    w_.Str("external_annotations");
    w_.BeginList();
    w_.EndList();
    w_.EndDict();
  }

 private:
  void WriteSegment(const Recorder& r, uint64_t base, const Segment& s) {
    struct B {
      uint64_t addr, size, requested;
      const Live* live;
    };
    std::vector<B> blocks;
    uint64_t allocated = 0, requested = 0, at = base;
    for (auto it = r.live_.lower_bound(base); it != r.live_.end() && it->first < base + s.size;
         ++it) {
      uint64_t size = r.a_.BlockSize(it->first);
      if (it->first > at) blocks.push_back({at, it->first - at, 0, nullptr});
      blocks.push_back({it->first, size, it->second.requested, &it->second});
      allocated += size;
      requested += it->second.requested;
      at = it->first + size;
    }
    if (at < base + s.size) blocks.push_back({at, base + s.size - at, 0, nullptr});

    w_.BeginDict();
    Int("device", 0);
    Int("address", base);
    Int("total_size", s.size);
    Int("allocated_size", allocated);
    Int("active_size", allocated);
    Int("requested_size", requested);
    Int("stream", 0);
    Str("segment_type", s.small ? "small" : "large");
    w_.Str("segment_pool_id");
    w_.BeginList();
    w_.Int(0);
    w_.Int(0);
    w_.EndList();
    w_.Str("is_expandable");
    w_.Bool(false);
    w_.Str("frames");
    Frames(s.origin, s.step);
    w_.Str("blocks");
    w_.BeginList();
    for (const B& b : blocks) {
      w_.BeginDict();
      Int("address", b.addr);
      Int("size", b.size);
      Int("requested_size", b.requested);
      Str("state", b.live ? "active_allocated" : "inactive");
      w_.Str("frames");
      if (b.live) {
        Frames(b.live->origin, b.live->step);
      } else {
        w_.BeginList();
        w_.EndList();
      }
      w_.EndDict();
    }
    w_.EndList();
    w_.EndDict();
  }

  const Trace& t_;
  const AllocatorReplayOptions& o_;
  PickleWriter& w_;
  bool overflow_ = false;
};

}  // namespace

Result<MemorySnapshotSummary> WriteMemorySnapshot(const Trace& trace,
                                                  const MemorySnapshotOptions& options,
                                                  std::ostream& out) {
  if (options.replay.allocator.expandable_segments) {
    return Error{
        "memory snapshot: expandable segments are not written yet (the allocator model does "
        "not record where it maps pages); write the snapshot without them"};
  }
  // Pickle ints are signed 64-bit. The model's addresses start at 2^40 and grow by each new
  // segment (the request rounded to 2 MiB, or 20 MiB at most for small ones); bounding the sum
  // of those over both replayed steps by 2^60 keeps every address and size below 2^61.
  {
    uint64_t total = 0;
    bool ok = true;
    auto add = [&](uint64_t b) {
      uint64_t seg = b > (uint64_t{1} << 56) ? b : b + kCudaLargeBuffer;
      if (b > (uint64_t{1} << 56) || seg > (uint64_t{1} << 60) - total) {
        ok = false;
      } else {
        total += seg;
      }
    };
    for (const Event& e : trace.events) {
      if (e.kind != Event::Kind::kAlloc || e.buffer < 0 ||
          static_cast<size_t>(e.buffer) >= trace.buffers.size()) {
        continue;  // the replay below refuses bad ids
      }
      add(trace.buffers[e.buffer].bytes);
      add(trace.buffers[e.buffer].bytes);
    }
    for (const ExtraAllocation& x : options.replay.extra) add(x.bytes);
    if (!ok) {
      return Error{
          "memory snapshot: the step allocates more than 2^59 bytes in all; addresses would not "
          "fit the snapshot's 64-bit integers"};
    }
  }
  // Validates the trace and gives the figures the recording must reproduce.
  auto report = ReplayCachingAllocator(trace, options.replay);
  if (!report) return report.error();
  Recorder r(trace, options.replay);
  r.Run();
  if (r.max_allocated_ != report->max_allocated || r.max_reserved_ != report->max_reserved ||
      r.max_requested_ != report->max_requested || r.oom_ != report->oom) {
    return Error{fmt::format(
        "memory snapshot: internal error: the recorded replay disagrees with the allocator "
        "model (allocated {} vs {}, reserved {} vs {})",
        r.max_allocated_, report->max_allocated, r.max_reserved_, report->max_reserved)};
  }
  PickleWriter w(out);
  SnapshotWriter sw(trace, options.replay, w);
  sw.Write(r);
  if (!w.Finish()) return Error{"memory snapshot: write failed"};
  if (sw.overflow()) return Error{"memory snapshot: an address or size is over 2^63"};
  MemorySnapshotSummary s;
  s.trace_entries = r.entries_.size();
  s.segments = r.segments_.size();
  s.max_allocated = r.max_allocated_;
  s.max_requested = r.max_requested_;
  s.final_allocated = r.a_.allocated();
  s.final_reserved = r.a_.reserved();
  s.max_reserved = r.max_reserved_;
  s.bytes_written = w.bytes();
  s.warmup_applied = r.warm_;
  s.oom = r.oom_;
  return s;
}

Result<MemorySnapshotSummary> WriteMemorySnapshotFile(const Trace& trace,
                                                      const MemorySnapshotOptions& options,
                                                      const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error{fmt::format("cannot write {}: {}", Printable(path), std::strerror(errno))};
  auto s = WriteMemorySnapshot(trace, options, out);
  if (!s) return s;
  out.close();
  if (!out) return Error{fmt::format("cannot write {}: {}", Printable(path), std::strerror(errno))};
  return s;
}

}  // namespace vramsim
