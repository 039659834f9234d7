// gRPC with node's @grpc/grpc-js (raw Buffer messages, no .proto):
//   node grpc.js serve PORT   — test.Echo: Say (unary; "fail" → NOT_FOUND, "N" → N bytes),
//                               Many (5 messages), Sum (counts a client stream), Chat (echo)
//   node grpc.js call PORT N  — N calls in batches of 10, kinds in turn; prints the counts
const grpc = require('@grpc/grpc-js');
const id = (b) => b;
const m = (path, requestStream, responseStream) => ({
  path, requestStream, responseStream,
  requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id,
});
const def = {
  Say: m('/test.Echo/Say', false, false),
  Many: m('/test.Echo/Many', false, true),
  Sum: m('/test.Echo/Sum', true, false),
  Chat: m('/test.Echo/Chat', true, true),
};
const [, , mode, port, n] = process.argv;
if (mode === 'serve') {
  const s = new grpc.Server();
  s.addService(def, {
    Say: (call, cb) => {
      const r = call.request.toString();
      if (r === 'fail') return cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
      cb(null, /^\d+$/.test(r) ? Buffer.alloc(+r, 120) : Buffer.from('echo:' + r));
    },
    Many: (call) => {
      for (let i = 0; i < 5; i++) call.write(Buffer.from('m' + i));
      call.end();
    },
    Sum: (call, cb) => {
      let k = 0;
      call.on('data', () => k++);
      call.on('end', () => cb(null, Buffer.from('' + k)));
    },
    Chat: (call) => {
      call.on('data', (d) => call.write(d));
      call.on('end', () => call.end());
    },
  });
  s.bindAsync('127.0.0.1:' + port, grpc.ServerCredentials.createInsecure(), () => {});
} else {
  const C = grpc.makeGenericClientConstructor(def, 'Echo');
  const c = new C('127.0.0.1:' + port, grpc.credentials.createInsecure());
  const counts = {};
  const inc = (k) => (counts[k] = (counts[k] || 0) + 1);
  const one = (i) => new Promise((done) => {
    const status = (name) => (e) => { inc(name + ' ' + (e ? e.code : 0)); done(); };
    switch (i % 5) {
      case 0: c.Say(Buffer.from('fail'), status('Say')); break;
      case 1: c.Say(Buffer.from(String([100, 3000, 50000][i % 3])), status('Say')); break;
      case 2: {
        const s = c.Many(Buffer.from('x'));
        s.on('data', () => {});
        s.on('status', (st) => status('Many')(st.code ? st : null));
        break;
      }
      case 3: {
        const s = c.Sum(status('Sum'));
        for (let j = 0; j < 3; j++) s.write(Buffer.from('a'));
        s.end();
        break;
      }
      default: {
        const s = c.Chat();
        s.on('data', () => {});
        s.on('status', (st) => status('Chat')(st.code ? st : null));
        s.write(Buffer.from('1'));
        s.write(Buffer.from('2'));
        s.end();
      }
    }
  });
  (async () => {
    for (let b = 0; b < +n / 10; b++) await Promise.all([...Array(10).keys()].map((j) => one(b * 10 + j)));
    console.log(JSON.stringify(counts));
    c.close();
  })();
}
