import { lockChannelPattern, refusalAdvice } from '../../lib/backends/redis/redis-permissions';

describe('advice for commands the Redis ACL refused', () => {
  it.each([
    ['{lock:orders:42}:c', '{lock:*'],
    ['app:{lock:orders:42}:c', 'app:{lock:*'],
    ['{orders}:c', '{*'],
    ['{#0123456789abcdef0123456789abcdef01234567}:lock:a}b:c', '{#*'],
    ['app:{#0123}:x:c', 'app:{#*'],
    ['plain', 'plain*'],
  ])('covers the channel %s and its neighbours with %s', (channel, pattern) => {
    expect(lockChannelPattern(channel)).toBe(pattern);
    // The pattern matches the channel (Redis glob: only * is used).
    const prefix = pattern.slice(0, -1);
    expect(channel.startsWith(prefix)).toBe(true);
  });

  it('names the channel, the pattern and allchannels for a refused SUBSCRIBE', () => {
    const advice = refusalAdvice(
      'NOPERM this user has no permissions to access one of the channels used as arguments',
      'app:{lock:x}:c',
    )!;
    expect(advice).toContain('"app:{lock:x}:c"');
    expect(advice).toContain('"&app:{lock:*"');
    expect(advice).toContain('"allchannels"');
    expect(advice).toContain('SUBSCRIBE');
  });

  it('reads the channel from the lock scripts’ own refusal', () => {
    const advice = refusalAdvice('NOPERM this user may not PUBLISH to channel {lock:x}:c; nothing was changed')!;
    expect(advice).toContain('"&{lock:*"');
  });

  it('lists the key pattern and the commands for any other refusal, and says nothing for other errors', () => {
    const advice = refusalAdvice('NOPERM this user has no permissions to access one of the keys used as arguments')!;
    expect(advice).toContain('~{lock:*');
    expect(advice).toContain('EVALSHA');
    expect(refusalAdvice("ERR The user executing the script can't run this command or subcommand")).toContain(
      'EVALSHA',
    );
    expect(refusalAdvice('WRONGTYPE Operation against a key holding the wrong kind of value')).toBeUndefined();
  });
});
